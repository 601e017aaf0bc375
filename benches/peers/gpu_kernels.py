"""The kernel peers of ../shared/peers/bench_kernels.py, timed on a CUDA device: the same
sizes, the same PyTorch / GeomLoss / POT / nflows forms (imported from bench_kernels.py, which
the GPU bundle carries next to this file), float32 tensors on the GPU.

A call is timed like `jetgen bench kernels --device cuda` times its own: CUDA events recorded
around it (device time), after 2 warm-ups, median over >= 5 runs (at most 200) and at least
`--min-time` seconds. Libraries that are missing are skipped and named in `meta.skipped`.
Output: the same JSON layout as bench_kernels.py (`threads` = 0: not a CPU run), so
`python compare_kernels.py kernels_cuda.json OUT --threads 0` gives the side-by-side table.

Usage: python gpu_kernels.py --out OUT.json [--only chamfer,sinkhorn,rqs] [--min-time 1]"""
import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.join(HERE, "..", "..", "..", "shared", "peers")):
    if os.path.exists(os.path.join(p, "bench_kernels.py")):
        sys.path.insert(0, p)
        break

import torch  # noqa: E402
from bench_kernels import chamfer_bcast, chamfer_cdist, chamfer_mm, sqdist  # noqa: E402

DEV = torch.device("cuda")  # --device cpu: a dry run of the script itself


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()
RESULTS = []
SKIPPED = []


def one_run(fn):
    """Seconds of one call: CUDA events around it on the current stream (device time, as
    `jetgen bench kernels --device cuda` times its own); wall clock on the CPU."""
    if DEV.type != "cuda":
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def timeit(fn, min_time, min_reps=5, max_reps=200, warmup=2):
    for _ in range(warmup):
        fn()
    sync()
    ts = []
    start = time.perf_counter()
    while len(ts) < max_reps and (len(ts) < min_reps or time.perf_counter() - start < min_time):
        ts.append(one_run(fn))
    ts.sort()
    q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0]] * 3
    return {"median_ms": 1e3 * statistics.median(ts), "p25_ms": 1e3 * q[0], "p75_ms": 1e3 * q[2],
            "min_ms": 1e3 * ts[0], "max_ms": 1e3 * ts[-1], "n": len(ts)}


def record(op, impl, mode, params, fn, min_time):
    r = timeit(fn, min_time)
    RESULTS.append({"op": op, "impl": impl, "mode": mode, "threads": 0, "device": DEV.type, **params, **r})
    p = " ".join(f"{k}={v}" for k, v in params.items())
    print(f"{op:10s} {impl:44s} {mode:8s} {p:34s} median {r['median_ms']:9.4f} ms "
          f"[min {r['min_ms']:.4f}, n={r['n']}]", flush=True)


def fwd_and_bwd(op, impl, params, fn, inputs, min_time):
    """Time fn(*inputs) without grad, then zero-grad + fn(...).sum().backward()."""
    with torch.no_grad():
        record(op, impl, "fwd", params, lambda: fn(*inputs), min_time)
    leaves = [t.clone().requires_grad_(True) for t in inputs]

    def step():
        for t in leaves:
            t.grad = None
        fn(*leaves).sum().backward()
    record(op, impl, "fwd+bwd", params, step, min_time)


def bench_chamfer(min_time):
    g = torch.Generator().manual_seed(0)
    for B, N in [(256, 30), (4096, 30), (256, 150), (4096, 150)]:
        x = torch.randn(B, N, 3, generator=g).to(DEV)
        y = torch.randn(B, N, 3, generator=g).to(DEV)
        for name, fn in (("torch_broadcast", chamfer_bcast), ("torch_matmul_expansion", chamfer_mm),
                         ("torch_cdist", chamfer_cdist)):
            # the target cloud is a constant, as in bench_kernels.py's backward into both
            fwd_and_bwd("chamfer", name, {"B": B, "N": N, "M": N, "D": 3},
                        fn, [x, y], min_time)


def bench_sinkhorn(min_time):
    B, N, M, eps, iters = 256, 30, 30, 0.01, 100
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, N, 3, generator=g).to(DEV)
    y = torch.rand(B, M, 3, generator=g).to(DEV)
    a = torch.full((B, N), 1.0 / N, device=DEV)
    b = torch.full((B, M), 1.0 / M, device=DEV)
    P = {"B": B, "N": N, "M": M, "eps": eps, "iters": iters}

    def plain(xx):
        C = sqdist(xx, y)
        la, lb = a.log(), b.log()
        f, gg = torch.zeros_like(a), torch.zeros_like(b)
        for _ in range(iters):
            f = -eps * torch.logsumexp(lb[:, None, :] + (gg[:, None, :] - C) / eps, dim=2)
            gg = -eps * torch.logsumexp(la[:, :, None] + (f[:, :, None] - C) / eps, dim=1)
        Pm = torch.exp(la[:, :, None] + lb[:, None, :] + (f[:, :, None] + gg[:, None, :] - C) / eps)
        return (Pm * C).sum((1, 2))
    with torch.no_grad():
        record("sinkhorn", "torch_plain_logdomain", "fwd", P, lambda: plain(x), min_time)
    xg = x.clone().requires_grad_(True)

    def step_plain():
        xg.grad = None
        plain(xg).sum().backward()
    record("sinkhorn", "torch_plain_logdomain_unrolled_autograd", "fwd+bwd", P, step_plain, min_time)

    try:
        from geomloss._legacy.sinkhorn_divergence import sinkhorn_loop, log_weights, sinkhorn_cost
        from geomloss._legacy.sinkhorn_samples import softmin_tensorized
    except ImportError as e:
        SKIPPED.append(f"geomloss: {e}")
    else:
        def gl_loop(xx, debias):
            C_xy, C_yx = sqdist(xx, y), sqdist(y, xx.detach())
            C_xx = sqdist(xx, xx.detach()) if debias else None
            C_yy = sqdist(y, y) if debias else None
            f_aa, g_bb, g_ab, f_ba = sinkhorn_loop(softmin_tensorized, log_weights(a), log_weights(b),
                                                   C_xx, C_yy, C_xy, C_yx, [eps] * iters, None,
                                                   debias=debias)
            return sinkhorn_cost(eps, None, a, b, f_aa, g_bb, g_ab, f_ba, batch=True, debias=debias)
        for debias in (False, True):
            fwd_and_bwd("sinkhorn", f"geomloss_sinkhorn_loop_debias{int(debias)}", P,
                        lambda xx, d=debias: gl_loop(xx, d), [x], min_time)

    try:
        from ot.batch import solve_batch
    except ImportError as e:
        SKIPPED.append(f"POT: {e}")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Cb = sqdist(x, y)
            with torch.no_grad():
                record("sinkhorn", "pot_solve_batch_log_sinkhorn_torch", "fwd", P,
                       lambda: solve_batch(Cb, reg=eps, a=a, b=b, max_iter=iters, tol=0.0,
                                           method="log_sinkhorn", grad="detach").value_linear, min_time)
            xg = x.clone().requires_grad_(True)

            def step_pot():
                xg.grad = None
                r = solve_batch(sqdist(xg, y), reg=eps, a=a, b=b, max_iter=iters, tol=0.0,
                                method="log_sinkhorn", grad="envelope")
                r.value_linear.sum().backward()
            record("sinkhorn", "pot_solve_batch_log_sinkhorn_torch_envelope", "fwd+bwd", P, step_pot,
                   min_time)


def bench_rqs(min_time):
    try:
        from nflows.transforms.splines.rational_quadratic import \
            unconstrained_rational_quadratic_spline as urqs
    except ImportError as e:
        SKIPPED.append(f"nflows: {e}")
        return
    B, D, K, tb = 1024, 90, 8, 3.0
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(B, D, generator=g) * 1.5).to(DEV)
    uw, uh = torch.randn(B, D, K, generator=g).to(DEV), torch.randn(B, D, K, generator=g).to(DEV)
    ud = torch.randn(B, D, K - 1, generator=g).to(DEV)
    P = {"B": B, "D": D, "K": K, "tail_bound": tb}
    for inverse in (False, True):
        def spline(xx, w, h, d, inv=inverse):
            y, lad = urqs(xx, w, h, d, inverse=inv, tails="linear", tail_bound=tb)
            return y.sum() + lad.sum()
        fwd_and_bwd("rqs", f"nflows_urqs_{'inverse' if inverse else 'forward'}", P, spline,
                    [x, uw, uh, ud], min_time)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="chamfer,sinkhorn,rqs")
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a dry run of this script")
    args = ap.parse_args()
    global DEV
    DEV = torch.device(args.device)
    if DEV.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_kernels.py: no CUDA device visible to PyTorch")
    name = torch.cuda.get_device_name(0) if DEV.type == "cuda" else "cpu (dry run)"
    meta = {"torch": torch.__version__, "device": name,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "timing": "CUDA events around each call (device time), median"}
    for op in args.only.split(","):
        {"chamfer": bench_chamfer, "sinkhorn": bench_sinkhorn, "rqs": bench_rqs}[op](args.min_time)
    meta["skipped"] = SKIPPED
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": RESULTS}, f, indent=1)
    print(f"wrote {args.out}" + (f" (skipped: {SKIPPED})" if SKIPPED else ""))


if __name__ == "__main__":
    main()
