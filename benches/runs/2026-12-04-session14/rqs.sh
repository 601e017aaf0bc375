#!/usr/bin/env bash
# RQS kernels: old (session-13 head), nflows peer, new, then new and old reversed; 2 threads.
set -euo pipefail
OLD=${OLD:-/tmp/jetgen-e57caed}
NEW=${NEW:-./target/release/jetgen}
PY=${PY:-$HOME/.venvs/jetgen-peers/bin/python}
out=benches/runs/2026-12-04-session14
$OLD bench kernels --only rqs --threads 2 > $out/rqs_old1.txt 2>&1
$PY ../shared/peers/bench_kernels.py --only rqs --threads 2 --out $out/rqs_peer.json > $out/rqs_peer.txt 2>&1
$NEW bench kernels --only rqs --threads 2 > $out/rqs_new1.txt 2>&1
$NEW bench kernels --only rqs --threads 2 > $out/rqs_new2.txt 2>&1
$OLD bench kernels --only rqs --threads 2 > $out/rqs_old2.txt 2>&1
for f in old1 new1 new2 old2; do echo "== $f"; grep -E "machine|^rqs" $out/rqs_$f.txt; done
cat $out/rqs_peer.txt | tail -15
