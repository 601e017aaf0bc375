"""PyTorch peer of `jetgen bench vae` / the `vae_step` criterion bench (benches/engine.rs):
one VAE training step, batch 100, latent 20, MLP encoder P*3-512-256-40 and decoder
20-256-512-P*3 (ReLU, linear outputs), Adam lr 1e-3, float32, synthetic jets drawn as in
`VaeStep::new` (src/cli/bench/workloads.rs), timed the same way (median of N runs after
warm-up).

* chamfer: 100 Cartesian particles, standardised; Chamfer distance by torch.cdist + min
  (squared Euclidean, summed over the particles in both directions, mean over the batch);
  loss = Chamfer + 0.1·KL.
* sinkhorn: 30 relative particles; GeomLoss SamplesLoss("sinkhorn", p=1, blur=0.01,
  scaling=0.63, debias=False) between the input (η, φ) with pT-fraction weights and the
  output (η, φ wrapped into [−π, π]) with weights relu(pT)+1e-6 normalised; loss =
  EMD/(2·0.1²) + KL. GeomLoss runs its ε-scaling from the diameter down to blur (one
  iteration per ε) and stops there; jetgen runs the same ε-scaling (factor 0.63 from the
  diameter) plus 10 iterations at ε = 0.01, i.e. at least as much work per pair.

Usage: python torch_vae.py [--threads 2] [--iters 30] [--json F] [--only chamfer,sinkhorn]
"""
import argparse, json, math, time

import torch
from torch import nn


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


class Vae(nn.Module):
    def __init__(self, d, latent=20, hidden=(512, 256)):
        super().__init__()
        enc, dec = [], []
        sizes = [d, *hidden, 2 * latent]
        for i in range(len(sizes) - 1):
            enc += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU()]
        sizes = [latent, *reversed(hidden), d]
        for i in range(len(sizes) - 1):
            dec += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU()]
        self.encoder = nn.Sequential(*enc[:-1])
        self.decoder = nn.Sequential(*dec[:-1])
        self.latent = latent

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = h[:, : self.latent], h[:, self.latent :].clamp(-30, 20)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1).mean()
        return self.decoder(z), kl


def chamfer(x, y):
    d = torch.cdist(x, y).pow(2)  # [B, N, M]
    return d.min(2).values.sum(1) + d.min(1).values.sum(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--json")
    ap.add_argument("--only", default="chamfer,sinkhorn")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    b = 100

    def row(name, times):
        q = lambda p: times[round((len(times) - 1) * p)]
        rows.append({"name": name, "device": "cpu", "median_ms": q(0.5), "p25_ms": q(0.25),
                     "p75_ms": q(0.75), "jets_per_s": b / (q(0.5) * 1e-3), "threads": args.threads})
        print(f"{name:<56} {q(0.5):>10.2f} ms  ({q(0.25):.2f}-{q(0.75):.2f})  {b / (q(0.5) * 1e-3):>9.0f} jets/s")

    if "chamfer" in args.only:
        p = 100
        x = torch.randn(b, p, 3)  # standardised momenta (N(0, 50 GeV) / 50 GeV)
        model = Vae(p * 3)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        flat = x.reshape(b, -1)

        def step():
            opt.zero_grad()
            xhat, kl = model(flat)
            loss = chamfer(x, xhat.reshape(b, p, 3)).mean() + 0.1 * kl
            loss.backward()
            opt.step()
            return loss.item()

        row("chamfer-vae train step P100 b100 (300-512-256-20)", time_ms(step, 2, args.iters))

    if "sinkhorn" in args.only:
        from geomloss import SamplesLoss

        p = 30
        r = torch.randn(b, p, 3)
        raw = torch.stack([0.2 * r[..., 0], 0.2 * r[..., 1], 0.05 * r[..., 2].abs() + 1e-4], -1)
        mean, std = torch.tensor([0.0, 0.0, 0.04]), torch.tensor([0.2, 0.2, 0.03])
        flat = ((raw - mean) / std).reshape(b, -1)
        pts_in = raw[..., :2].contiguous()
        a = raw[..., 2] / raw[..., 2].sum(1, keepdim=True)
        emd = SamplesLoss("sinkhorn", p=1, blur=0.01, scaling=0.63, debias=False, backend="tensorized")
        model = Vae(p * 3)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad()
            xhat, kl = model(flat)
            out = xhat.reshape(b, p, 3) * std + mean
            phi = out[..., 1]
            phi = phi - (2 * math.pi) * torch.round(phi.detach() / (2 * math.pi))
            pts_out = torch.stack([out[..., 0], phi], -1)
            w = torch.relu(out[..., 2]) + 1e-6
            w = w / w.sum(1, keepdim=True)
            loss = emd(a, pts_in, w, pts_out).mean() / (2 * 0.1**2) + kl
            loss.backward()
            opt.step()
            return loss.item()

        row("sinkhorn-emd-vae train step P30 b100 (90-512-256-20)", time_ms(step, 2, args.iters))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
