#!/usr/bin/env bash
# The EMD-VAE at fixed β (each run to its own equilibrium, 4,000 steps), for D(β) = −dKL/d ln β
# by finite differences between neighbouring β. One thread per run. From the repo root.
set -euo pipefail
D=../shared/data/jetnet-like
J=${JETGEN:-./target/release/jetgen}
export RAYON_NUM_THREADS=1
for beta in 0.2 0.1 0.05 0.02 0.01 0.005; do
  $J train vae --data $D/g.hdf5 --loss sinkhorn --beta $beta --latent 20 --steps 4000 --batch 100 \
    --lr 1e-3 --val-every 250 --patience 1000 --generate 1000 --quick-eval --seed 1 --overwrite \
    --out /work/runs/beq-$beta
done
