"""Markdown tables of how the kernels' cost grows: `jetgen bench scaling --threads 1 --json A`
and `jetgen bench scaling --threads 2 --json B`, one row per case with both medians, the
parallel efficiency t1 / (2·t2), the time per unit of work (ns per distance for Chamfer and
Sinkhorn per iteration, ns per element for RQS), and the fraction of the roofline bound that
each run measured in its own machine model. Usage: python scaling_table.py A B"""
import argparse
import json

ap = argparse.ArgumentParser()
ap.add_argument("one_thread")
ap.add_argument("two_threads")
args = ap.parse_args()


def rows(path):
    items = json.load(open(path))
    out = {}
    for r in items:
        if "op" not in r:
            continue  # the machine model
        key = (r["op"], r["batch"], r["n"], r["bins"], r["pass"], r["variant"])
        out[key] = r
    return out


def units(r):
    """The work a case is normalised by: distances (times iterations), or spline elements."""
    if r["op"] == "chamfer":
        return r["batch"] * r["n"] * r["m"], "ns per distance"
    if r["op"] == "sinkhorn":
        return r["batch"] * r["n"] * r["m"] * r["iters"], "ns per distance·iteration"
    return r["batch"] * r["n"], "ns per element"


one, two = rows(args.one_thread), rows(args.two_threads)
ops = []
for key in two:
    if key[0] not in ops:
        ops.append(key[0])
for op in ops:
    unit = None
    lines = []
    for key, r2 in two.items():
        if key[0] != op or key not in one:
            continue
        r1 = one[key]
        count, unit = units(r2)
        t1, t2 = r1["median_s"], r2["median_s"]
        size = f"B={r2['batch']} N={r2['n']}" + (f" K={r2['bins']}" if r2["bins"] else "")
        roof = lambda r: f"{100 * r['roofline_fraction']:.0f}" if "roofline_fraction" in r else "-"
        lines.append(
            f"| {size} | {r2['pass']} | {t1 * 1e3:.3f} | {t2 * 1e3:.3f} | {t1 / (2 * t2):.2f} "
            f"| {t1 * 1e9 / count:.3f} | {t2 * 1e9 / count:.3f} | {roof(r1)} | {roof(r2)} |"
        )
    print(f"\n**{op}**\n")
    print(f"| case | pass | 1 thread ms | 2 threads ms | parallel efficiency | 1 thread {unit} "
          f"| 2 threads {unit} | % roof 1 | % roof 2 |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))
