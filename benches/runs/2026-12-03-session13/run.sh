#!/usr/bin/env bash
# Session 13's interleaved Sinkhorn rounds (old = a11c044, new = the session's build), then the
# peers, then new once more; and the Chamfer/RQS rounds. Run from the repository root.
set -e
D=benches/runs/2026-12-03-session13
OLD=${OLD:-/tmp/old-target/release/jetgen}
NEW=${NEW:-target/release/jetgen}
for r in 1 2; do
  $OLD bench kernels --only sinkhorn --threads 2 --min-time 0.5 --json $D/sinkhorn_old_$r.json > $D/sinkhorn_old_$r.txt 2>&1
  $NEW bench kernels --only sinkhorn --threads 2 --min-time 0.5 --json $D/sinkhorn_new_$r.json > $D/sinkhorn_new_$r.txt 2>&1
done
~/.venvs/jetgen-peers/bin/python ../shared/peers/bench_kernels.py --only sinkhorn --threads 2 > $D/sinkhorn_peers.txt 2>&1
$NEW bench kernels --only sinkhorn --threads 2 --min-time 0.5 --json $D/sinkhorn_new_3.json > $D/sinkhorn_new_3.txt 2>&1
for r in 1 2; do
  $OLD bench kernels --only rqs,chamfer --threads 2 --min-time 0.3 --json $D/rqs_chamfer_old_$r.json > $D/rqs_chamfer_old_$r.txt 2>&1
  $NEW bench kernels --only rqs,chamfer --threads 2 --min-time 0.3 --json $D/rqs_chamfer_new_$r.json > $D/rqs_chamfer_new_$r.txt 2>&1
done
# scaling: jetgen bench scaling --only sinkhorn --threads 2 --min-time 0.2 --json $D/scaling_sinkhorn_<binary>.json (old, new = f93642c, blocked = 121524e), one after the other
