"""PyTorch peer of `jetgen bench mpgan` (src/cli/bench/workloads.rs, `MpganStep`): one MPGAN
training step — one discriminator step then one generator step — on the CPU, in float32,
timed the same way (median of N runs after warm-up).

The model is written from the MPGAN paper (arXiv:2106.11535) and its released gluon
`args.txt` (../shared/MODELS.md §4(b)), in the plain PyTorch style of the reference: the
pair inputs [x_i, x_j] of the fully connected graph are built by broadcasting and
concatenating (B×N×N×2F), the masked sum over senders multiplies by the mask.

* 30 particles; per-particle noise N(0, 0.2²) of size 32; "mask_c": multiplicities drawn
  uniformly in 10..=30 (the bench's stand-in for the data histogram), the N particles with
  the largest first noise feature real;
* each message-passing layer: edge MLP 96-160-192 on [x_i, x_j] (LeakyReLU 0.2 after every
  layer), masked sum over j, node MLP 256-256-out on [Σ_j m_ij, x_i] (LeakyReLU 0.2 between,
  linear last); 2 layers: G 32→32→3 then tanh, mask − 0.5 appended; D 4→32→32, masked sum
  over particles, Linear(32, 1); dropout 0.5 in every D MLP;
* LSGAN: D loss = mean (σ(D(x_r)) − 1)² + mean σ(D(x_g))², G loss = mean (σ(D(x_g)) − 1)²;
  RMSprop lr 3e-5 (D), 1e-5 (G), PyTorch defaults otherwise;
* synthetic real jets as in `MpganStep::new`: (η, φ) ~ 0.3·N(0, 1), pT feature
  clamp(0.3·N(0, 1), −0.5, 0.5), mask ±0.5, padded particles [0, 0, −0.5, −0.5].

Usage: python torch_mpgan.py [--batch 32,256] [--threads 2] [--iters 10] [--json F] [--check]
(--check: two steps at batch 3, losses in range, nothing timed)
"""
import argparse, json, time

import torch
from torch import nn

P, L = 30, 32
FE, FN = (96, 160, 192), (256, 256)


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


def mlp(sizes, last_act, dropout):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes) or last_act:
            layers.append(nn.LeakyReLU(0.2))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MPLayer(nn.Module):
    def __init__(self, fin, fout, dropout):
        super().__init__()
        self.fe = mlp([2 * fin, *FE], True, dropout)
        self.fn = mlp([FE[-1] + fin, *FN, fout], False, dropout)

    def forward(self, x, mask):  # x [B, N, F], mask [B, N]
        b, n, f = x.shape
        xi = x.unsqueeze(2).expand(b, n, n, f)
        xj = x.unsqueeze(1).expand(b, n, n, f)
        e = self.fe(torch.cat([xi, xj], -1))  # [B, N, N, FE[-1]]
        m = (e * mask[:, None, :, None]).sum(2)
        return self.fn(torch.cat([m, x], -1))


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([MPLayer(L, L, 0.0), MPLayer(L, 3, 0.0)])

    def forward(self, b):
        z = torch.randn(b, P, L) * 0.2
        counts = torch.randint(10, P + 1, (b,))
        rank = z[:, :, 0].argsort(1, descending=True).argsort(1)
        mask = (rank < counts[:, None]).float()
        h = z
        for layer in self.layers:
            h = layer(h, mask)
        return torch.cat([torch.tanh(h), (mask - 0.5)[..., None]], -1), mask


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([MPLayer(4, L, 0.5), MPLayer(L, L, 0.5)])
        self.head = nn.Linear(L, 1)

    def forward(self, x):
        mask = (x[..., 3] > 0).float()
        h = x
        for layer in self.layers:
            h = layer(h, mask)
        return self.head((h * mask[..., None]).sum(1))


def real_batch(b):
    r = torch.randn(b, P, 4)
    counts = torch.randint(10, P + 1, (b,))
    real = (torch.arange(P)[None, :] < counts[:, None]).float()
    x = torch.stack([0.3 * r[..., 0], 0.3 * r[..., 1], (0.3 * r[..., 2]).clamp(-0.5, 0.5), real - 0.5], -1)
    pad = torch.tensor([0.0, 0.0, -0.5, -0.5])
    return torch.where(real[..., None] > 0, x, pad)


def make_step(b):
    g, d = Generator(), Discriminator()
    opt_g = torch.optim.RMSprop(g.parameters(), lr=1e-5)
    opt_d = torch.optim.RMSprop(d.parameters(), lr=3e-5)
    real = real_batch(b)

    def step():
        opt_d.zero_grad()
        with torch.no_grad():
            fake, _ = g(b)
        d_loss = (torch.sigmoid(d(real)) - 1).pow(2).mean() + torch.sigmoid(d(fake)).pow(2).mean()
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        fake, _ = g(b)
        g_loss = (torch.sigmoid(d(fake)) - 1).pow(2).mean()
        g_loss.backward()
        opt_g.step()
        return d_loss.item(), g_loss.item()

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="32,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.check:
        step = make_step(3)
        for _ in range(2):
            dl, gl = step()
            assert 0 <= dl <= 2 and 0 <= gl <= 1, (dl, gl)
        n_g = sum(p.numel() for p in Generator().parameters())
        n_d = sum(p.numel() for p in Discriminator().parameters())
        print(f"ok: losses {dl:.4f} {gl:.4f}; parameters G {n_g}, D {n_d}")
        return
    rows = []
    for b in [int(v) for v in args.batch.split(",")]:
        t = time_ms(make_step(b), 1, args.iters)
        q = lambda p: t[round((len(t) - 1) * p)]
        name = f"mpgan train step (D+G) P30 b{b} (fe 96-160-192, fn 256-256)"
        rows.append({"name": name, "device": "cpu", "median_ms": q(0.5), "p25_ms": q(0.25),
                     "p75_ms": q(0.75), "jets_per_s": b / (q(0.5) * 1e-3), "threads": args.threads})
        print(f"{name:<64} {q(0.5):>10.2f} ms  ({q(0.25):.2f}-{q(0.75):.2f})  {b / (q(0.5) * 1e-3):>9.0f} jets/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
