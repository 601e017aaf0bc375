#!/usr/bin/env bash
# jetgen eval against jetnet 0.2.5 on the same files (40k g vs 40k q), in the order
# old (cb4ed5d, before the pruned COV/MMD), new, jetnet, new, old. From the repo root.
set -euo pipefail
D=../shared/data/jetnet-like
OLD=${OLD:-/tmp/jetgen-s15}
NEW=${NEW:-./target/release/jetgen}
PY=${PY:-$HOME/.venvs/jetgen-peers/bin/python}
out=${OUT:-benches/runs/2026-12-07-session15}
/usr/bin/time -f "%e s %M KB" $OLD eval --real $D/g.hdf5 --gen $D/q.hdf5 > $out/eval_old1.txt 2>&1
/usr/bin/time -f "%e s %M KB" $NEW eval --real $D/g.hdf5 --gen $D/q.hdf5 > $out/eval_new1.txt 2>&1
/usr/bin/time -v $PY ../shared/peers/eval_metrics.py $D/g.hdf5 $D/q.hdf5 --skip fpnd > $out/eval_jetnet.txt 2>&1
/usr/bin/time -f "%e s %M KB" $NEW eval --real $D/g.hdf5 --gen $D/q.hdf5 > $out/eval_new2.txt 2>&1
/usr/bin/time -f "%e s %M KB" $OLD eval --real $D/g.hdf5 --gen $D/q.hdf5 > $out/eval_old2.txt 2>&1
grep -h "time:\|Elapsed\| KB$" $out/eval_*.txt
