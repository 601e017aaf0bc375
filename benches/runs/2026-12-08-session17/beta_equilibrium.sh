#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/../../.."
D=../shared/data/jetnet-like
J=${JETGEN:-./target/release/jetgen}
export RAYON_NUM_THREADS=1
for beta in 0.2 0.1 0.05 0.02 0.01 0.005; do
  /usr/bin/time -f "beta $beta: %e s, %M KB" $J train vae --data $D/g.hdf5 --loss sinkhorn --beta $beta --latent 20 --steps 4000 --batch 100 \
    --lr 1e-3 --val-every 250 --patience 1000 --generate 1000 --quick-eval --seed 1 --overwrite \
    --out /work/runs/beq-$beta > /work/runs/beq-$beta.log 2>&1
  tail -1 /work/runs/beq-$beta.log
done

$J dimensionality /work/runs/beq-{0.2,0.1,0.05,0.02,0.01,0.005} \
  --plots benches/runs/2026-12-08-session17/dimensionality --json benches/runs/2026-12-08-session17/dimensionality.json
