"""PyTorch peer of `jetgen bench fm`: an EPiC flow-matching model of the same configuration
as jetgen's (src/models/fm/network.rs): 6 EPiC layers, hidden 128, global 10, cosine time
embedding 32 fed to the particle and the global path, masked mean + sum pooling (sum scale
1e-2), leaky ReLU 0.01, no weight norm, 30 particles x 3 features, float32, on the CPU:
475,657 parameters, the same count as jetgen's EpicConfig::reference(30, 0).

Times (median of N runs after warm-up), on synthetic standardised jets whose multiplicities
are uniform in 10..30 (first n particles real, as jetgen's generation masks them):
* one training step: straight path with sigma_min 1e-4, masked MSE to x1 - (1 - sigma_min) x0,
  AdamW lr 1e-3 (independent coupling);
* generation at NFE 20 and 100: midpoint with 10 and 50 steps from N(0, I) noise.

Usage: python torch_epic_fm.py [--threads 2] [--iters 10] [--batch 1024] [--json F]
       python torch_epic_fm.py --batch 4 --iters 1 --hidden 16   # a quick correctness run
"""
import argparse, json, math, time

import torch
from torch import nn
import torch.nn.functional as F


def time_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    out.sort()
    return out


def time_embedding(t, size):
    half = size // 2
    k = torch.arange(half, dtype=torch.float32)
    w = 1000.0 ** (k / max(half - 1, 1)) if half > 1 else torch.ones(1)
    arg = t[:, None] * w[None, :]
    return torch.cat([torch.cos(arg), torch.sin(arg)], 1)


class EpicLayer(nn.Module):
    def __init__(self, h, g, t):
        super().__init__()
        self.fc_global1 = nn.Linear(2 * h + g + t, h)
        self.fc_global2 = nn.Linear(h, g)
        self.fc_local1 = nn.Linear(h + g + t, h)
        self.fc_local2 = nn.Linear(h, h)


class Epic(nn.Module):
    def __init__(self, hidden=128, glob=10, tdim=32, layers=6, sum_scale=1e-2):
        super().__init__()
        h, g, t = hidden, glob, tdim
        self.local_0 = nn.Linear(3 + t, h)
        self.global_0 = nn.Linear(2 * h + t, g)
        self.layers = nn.ModuleList([EpicLayer(h, g, t) for _ in range(layers)])
        self.out = nn.Linear(h, 3)
        self.tdim, self.sum_scale = tdim, sum_scale

    def pool(self, h, mask, count):
        s = (h * mask).sum(1)
        return torch.cat([s / count, s * self.sum_scale], 1)

    def forward(self, x, t, mask):
        # x [B, P, 3], t [B], mask [B, P, 1]
        b, p, _ = x.shape
        tau = time_embedding(t, self.tdim)
        tau_p = tau[:, None, :].expand(b, p, self.tdim)
        count = mask.sum(1).clamp(min=1.0)
        lr = lambda v: F.leaky_relu(v, 0.01)
        h = lr(self.local_0(torch.cat([x, tau_p], 2))) * mask
        g = lr(self.global_0(torch.cat([self.pool(h, mask, count), tau], 1)))
        for l in self.layers:
            g1 = lr(l.fc_global1(torch.cat([self.pool(h, mask, count), g, tau], 1)))
            g = lr(l.fc_global2(g1) + g)
            gp = g[:, None, :].expand(b, p, g.shape[1])
            h1 = lr(l.fc_local1(torch.cat([h, gp, tau_p], 2)))
            h = lr(l.fc_local2(h1) + h) * mask
        return self.out(h) * mask


def synthetic(b, p, gen):
    n = torch.randint(10, p + 1, (b,), generator=gen)
    mask = (torch.arange(p)[None, :] < n[:, None]).float()[..., None]
    x1 = torch.randn(b, p, 3, generator=gen) * mask
    return x1, mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    b, p, sigma_min = args.batch, 30, 1e-4
    model = Epic(hidden=args.hidden)
    n_params = sum(q.numel() for q in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x1, mask = synthetic(b, p, gen)
    rows = []

    def row(name, times):
        q = lambda f: times[round((len(times) - 1) * f)]
        rows.append({"name": name, "device": "cpu", "median_ms": q(0.5), "p25_ms": q(0.25),
                     "p75_ms": q(0.75), "jets_per_s": b / (q(0.5) * 1e-3),
                     "threads": args.threads, "batch": b, "parameters": n_params})
        print(f"{name:<52} {q(0.5):>10.2f} ms  ({q(0.25):.2f}-{q(0.75):.2f})  "
              f"{b / (q(0.5) * 1e-3):>9.0f} jets/s")

    def step():
        opt.zero_grad()
        x0 = torch.randn(b, p, 3) * mask
        t = torch.rand(b)
        tt = t[:, None, None]
        xt = (1 - (1 - sigma_min) * tt) * x0 + tt * x1
        u = x1 - (1 - sigma_min) * x0
        v = model(xt, t, mask)
        loss = (((v - u) ** 2) * mask).sum() / (3 * mask.sum())
        loss.backward()
        opt.step()
        return loss.item()

    def sample(steps):
        def run():
            with torch.no_grad():
                x = torch.randn(b, p, 3) * mask
                h = 1.0 / steps
                for s in range(steps):
                    t = torch.full((b,), s * h)
                    k1 = model(x, t, mask)
                    x = x + h * model(x + 0.5 * h * k1, t + 0.5 * h, mask)
                assert torch.isfinite(x).all()
                return x
        return run

    print(f"EPiC-FM (6 layers x {args.hidden}, global 10, t-embedding 32): {n_params} parameters, batch {b}")
    row(f"fm train step b{b}", time_ms(step, 1, args.iters))
    for nfe in (20, 100):
        row(f"fm generate midpoint NFE {nfe} b{b}", time_ms(sample(nfe // 2), 1, args.iters))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
