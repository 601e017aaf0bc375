"""Side-by-side table: `jetgen bench generate --json J` (flow train-step and sample rows) vs
../shared/peers/bench_kernels.py --only flow_step --out P (nflows), same machine, same thread
count. Ratio = nflows ms / jetgen ms (> 1: jetgen faster).
Usage: python compare_flow.py J P [--threads 2]"""
import argparse, json, re

ap = argparse.ArgumentParser()
ap.add_argument("jetgen")
ap.add_argument("peer")
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
ours = json.load(open(args.jetgen))
peers = [r for r in json.load(open(args.peer))["results"] if r["threads"] == args.threads and r["op"] == "flow_step"]
print("| flow (D=90, K=8, batch 256) | pass | jetgen ms | nflows ms | ratio |")
print("|---|---|---|---|---|")
for r in ours:
    m = re.match(r"flow (train step|sample) (\d+)x(\d+)x(\d+) b256", r["name"])
    if not m:
        continue
    mode = "train" if m.group(1) == "train step" else "sample"
    layers, hidden = int(m.group(2)), int(m.group(3))
    for p in peers:
        if p["mode"] == mode and p["layers"] == layers and p["hidden"] == hidden:
            print(f"| {layers} layers × {hidden} × 2 blocks | {mode} | {r['median_ms']:.1f} | {p['median_ms']:.1f} | {p['median_ms'] / r['median_ms']:.2f}× |")
