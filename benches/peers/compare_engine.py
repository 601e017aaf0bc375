"""Interleaved head-to-head of `jetgen bench` and the PyTorch peer on the same machine:
ROUNDS alternating runs of each (so background load hits both alike), then the median of
the per-run medians and the speed ratio torch_time / jetgen_time (> 1: jetgen faster).
Usage: python compare_engine.py JETGEN_BIN [--rounds 5] [--threads 2] [--device cpu]"""
import argparse, json, os, statistics, subprocess, sys, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("jetgen")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--iters", type=int, default=100)
ap.add_argument("--device", default="cpu")
args = ap.parse_args()
here = os.path.dirname(os.path.abspath(__file__))
runs = {"jetgen": {}, "torch": {}}
with tempfile.TemporaryDirectory() as tmp:
    for r in range(args.rounds):
        jf, tf = os.path.join(tmp, f"j{r}.json"), os.path.join(tmp, f"t{r}.json")
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), MATMUL_NUM_THREADS=str(args.threads))
        subprocess.run([args.jetgen, "bench", "--device", args.device, "--iters", str(args.iters), "--json", jf],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, os.path.join(here, "torch_engine.py"), "--device", args.device, "--threads",
                        str(args.threads), "--iters", str(args.iters), "--json", tf], check=True, stdout=subprocess.DEVNULL)
        for who, f in (("jetgen", jf), ("torch", tf)):
            for row in json.load(open(f)):
                runs[who].setdefault(row["name"], []).append(row["median_ms"])
print(f"| benchmark ({args.device}, {args.threads} threads) | jetgen ms | PyTorch ms | speed ratio (torch/jetgen) |")
print("|---|---|---|---|")
for name, j in runs["jetgen"].items():
    t = runs["torch"].get(name)
    if not t:
        continue
    jm, tm = statistics.median(j), statistics.median(t)
    print(f"| {name} | {jm:.3f} | {tm:.3f} | {tm / jm:.2f} |")
