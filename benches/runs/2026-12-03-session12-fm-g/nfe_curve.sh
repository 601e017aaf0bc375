#!/usr/bin/env bash
# Quality against cost for the session-12 EPiC-FM run on g: 10,000 jets per sampler,
# scored against the run's own validation split (jetgen eval --real run:DIR, MPGAN protocol).
# Usage: nfe_curve.sh JETGEN RUN_DIR OUTDIR
set -eu
J=$1; RUN=$2; OUT=$3
for spec in "euler 10" "midpoint 10" "midpoint 25" "midpoint 50" "dopri5 1e-3"; do
  set -- $spec
  name="$1-$2"
  if [ "$1" = dopri5 ]; then opt="--tol $2"; else opt="--steps $2"; fi
  start=$(date +%s.%N)
  $J sample --model "$RUN" --n 10000 --seed 7 --solver $1 $opt --out "$OUT/$name.hdf5" > "$OUT/$name-sample.txt" 2>&1
  end=$(date +%s.%N)
  echo "$name sample_s $(echo "$end - $start" | bc)" >> "$OUT/times.txt"
  $J eval --gen "$OUT/$name.hdf5" --real "run:$RUN" --protocol mpgan --json "$OUT/$name-eval.json" > "$OUT/$name-eval.txt" 2>&1
  rm -f "$OUT/$name.hdf5"
done
