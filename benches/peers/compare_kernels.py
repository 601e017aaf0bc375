"""Side-by-side table: `jetgen bench kernels --json J` vs ../shared/peers/bench_kernels.py
output `--out P`, run on the same machine with the same thread count. For every jetgen case,
each peer implementation of the same op/size/pass with its median and the speed ratio
peer/jetgen (> 1: jetgen faster). Usage: python compare_kernels.py J P [--threads 2]"""
import argparse, json

ap = argparse.ArgumentParser()
ap.add_argument("jetgen")
ap.add_argument("peer")
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
# (the first entry of a `--json` file is the machine model, not a kernel row)
ours = [r for r in json.load(open(args.jetgen)) if "op" in r]
peers = [r for r in json.load(open(args.peer))["results"] if r["threads"] == args.threads]


def key_peer(r):
    if r["op"] == "rqs":
        return ("rqs", r["mode"], "inverse" if "inverse" in r["impl"] else "forward", r["B"])
    if r["op"] == "sinkhorn":
        debias = "debias1" in r["impl"] or "SamplesLoss" in r["impl"]
        return ("sinkhorn", r["mode"], f"debias={'true' if debias else 'false'}", r["B"])
    return ("chamfer", r["mode"], r["B"], r["N"])


def key_ours(r):
    if r["op"] == "rqs":
        return ("rqs", r["pass"], r["variant"], r["batch"])
    if r["op"] == "sinkhorn":
        return ("sinkhorn", r["pass"], r["variant"], r["batch"])
    return ("chamfer", r["pass"], r["batch"], r["n"])


print(f"| op | size | pass | jetgen ms | peer | peer ms | ratio |")
print("|---|---|---|---|---|---|---|")
for r in ours:
    k = key_ours(r)
    matches = sorted((p for p in peers if key_peer(p) == k), key=lambda p: p["median_ms"])
    size = {"chamfer": f"B={r['batch']} N=M={r['n']} D=3", "sinkhorn": f"B={r['batch']} N=M=30 ε=0.01 100 it, {r['variant']}",
            "rqs": f"1024×90 K=8 {r['variant']}"}[r["op"]]
    jm = r["median_s"] * 1e3
    if not matches:
        print(f"| {r['op']} | {size} | {r['pass']} | {jm:.3f} | – | – | – |")
    for p in matches:
        print(f"| {r['op']} | {size} | {r['pass']} | {jm:.3f} | {p['impl']} | {p['median_ms']:.3f} | {p['median_ms'] / jm:.1f} |")
