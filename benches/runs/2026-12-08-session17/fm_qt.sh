#!/usr/bin/env bash
# EPiC-FM on q and t at a stated CPU budget (issue 19): the g run's recipe (session 12), one
# thread each, side by side; --steps sized so that the cosine schedule ends inside the budget.
set -euo pipefail
cd /work/main
D=../shared/data/jetnet-like
J=${JETGEN:-/tmp/jetgen-s17b}
STEPS=${STEPS:-12000}
for c in q t; do
  RAYON_NUM_THREADS=1 /usr/bin/time -f "$c: %e s wall, %M KB peak" $J train fm --data $D/$c.hdf5 \
    --steps $STEPS --batch 256 --val-every 1000 --patience 40 --generate 10000 --seed 1 \
    --time-limit 62 --overwrite --out /work/runs/fm-$c-s17 > /work/runs/fm-$c-s17.log 2>&1 &
done
wait
# q: the run's report had FPD 87e-3 from one 10k sample; a second sample (seed 2) for comparison
# $J sample --model /work/runs/fm-q-s17 --n 10000 --seed 2 --out /tmp/q2.hdf5
# $J eval --real run:/work/runs/fm-q-s17 --gen /tmp/q2.hdf5 --protocol mpgan   # -> fm-q/eval_resample_seed2.txt
