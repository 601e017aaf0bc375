#!/usr/bin/env bash
# jetgen eval against jetnet 0.2.5 on the same files (40k g vs 40k q), interleaved:
# old jetgen (session-13 head), jetnet, new jetgen, new jetgen again. From the repo root.
set -euo pipefail
D=../shared/data/jetnet-like
OLD=${OLD:-/tmp/jetgen-e57caed}
NEW=${NEW:-./target/release/jetgen}
PY=${PY:-$HOME/.venvs/jetgen-peers/bin/python}
out=${OUT:-benches/runs/2026-12-04-session14}
/usr/bin/time -v $OLD eval --real $D/g.hdf5 --gen $D/q.hdf5 > $out/eval_old.txt 2>&1
/usr/bin/time -v $PY ../shared/peers/eval_metrics.py $D/g.hdf5 $D/q.hdf5 --skip fpnd > $out/eval_jetnet.txt 2>&1
/usr/bin/time -v $NEW eval --real $D/g.hdf5 --gen $D/q.hdf5 > $out/eval_new.txt 2>&1
/usr/bin/time -v $NEW eval --real $D/g.hdf5 --gen $D/q.hdf5 > $out/eval_new2.txt 2>&1
grep -h "time:\|Elapsed\|Maximum resident" $out/eval_*.txt
