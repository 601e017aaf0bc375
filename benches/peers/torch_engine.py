"""PyTorch peer of `jetgen bench` / benches/engine.rs: the same GEMMs and MLP training step
(90-256-256-90 ReLU, batch 256, MSE, Adam lr 1e-4), float32, timed the same way (median of
N runs after warm-up). Usage: python torch_engine.py [--threads 2] [--iters 30] [--device cpu|cuda] [--json F]
"""
import argparse, json, time

import torch


def time_ms(fn, warmup, iters, sync):
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t) * 1e3)
    out.sort()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    rows = []

    def row(name, times, flops=None):
        q = lambda p: times[round((len(times) - 1) * p)]
        med = q(0.5)
        rows.append({"name": name, "device": str(dev), "median_ms": med, "p25_ms": q(0.25), "p75_ms": q(0.75),
                     "gflops": None if flops is None else flops / (med * 1e6), "threads": args.threads,
                     "torch": torch.__version__})

    for m, k, n in [(256, 256, 256), (1024, 256, 256)]:
        a = torch.randn(m, k, device=dev)
        b = torch.randn(k, n, device=dev)
        row(f"sgemm {m}x{k}x{n}", time_ms(lambda: a @ b, 3, args.iters, sync), 2.0 * m * k * n)

    mlp = torch.nn.Sequential(torch.nn.Linear(90, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 90)).to(dev)
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-4)
    x = torch.randn(256, 90, device=dev)
    y = torch.randn(256, 90, device=dev)

    def step():
        opt.zero_grad()
        loss = ((mlp(x) - y) ** 2).mean()
        loss.backward()
        opt.step()

    row("mlp step 90-256-256-90 b256 (fwd+bwd+adam)", time_ms(step, 3, args.iters, sync))

    # WGAN critic step (jetgen's CriticStep): critic 90-256-256-1 LeakyReLU(0.2), Adam;
    # plain: mean D(fake) - mean D(real); WGAN-GP: + 10 * mean (|dD(x_hat)/dx_hat| - 1)^2.
    critic = torch.nn.Sequential(torch.nn.Linear(90, 256), torch.nn.LeakyReLU(0.2), torch.nn.Linear(256, 256),
                                 torch.nn.LeakyReLU(0.2), torch.nn.Linear(256, 1)).to(dev)
    copt = torch.optim.Adam(critic.parameters())
    real = torch.randn(256, 90, device=dev)
    fake = 0.3 + 0.7 * torch.randn(256, 90, device=dev)
    alpha = torch.rand(256, 1, device=dev)
    x_hat0 = fake + alpha * (real - fake)

    def critic_step(penalty):
        copt.zero_grad()
        loss = critic(fake).mean() - critic(real).mean()
        if penalty:
            x_hat = x_hat0.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
            loss = loss + 10.0 * ((g.norm(dim=1) - 1.0) ** 2).mean()
        loss.backward()
        copt.step()

    row("critic step 90-256-256-1 b256 (plain)", time_ms(lambda: critic_step(False), 3, args.iters, sync))
    row("critic step 90-256-256-1 b256 (WGAN-GP)", time_ms(lambda: critic_step(True), 3, args.iters, sync))
    print(f"torch {torch.__version__} on {dev}, {args.threads} threads, median of {args.iters}")
    for r in rows:
        gf = "-" if r["gflops"] is None else f"{r['gflops']:.1f}"
        print(f"{r['name']:<46} {r['median_ms']:>10.3f} {r['p25_ms']:>10.3f}-{r['p75_ms']:<10.3f} {gf:>9}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
