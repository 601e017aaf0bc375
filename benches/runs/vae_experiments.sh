#!/usr/bin/env bash
# The VAE/AE experiments of benches/RESULTS.md ("VAEs and autoencoders"), on the shared
# JetNet-like data, one CPU thread each (the machine was shared). Usage: from the repo root,
#   benches/runs/vae_experiments.sh [recon|anomaly|sweep|prior|quark|all]
set -euo pipefail
D=../shared/data/jetnet-like
J=${JETGEN:-./target/release/jetgen}
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}
what=${1:-all}
common="--batch 100 --lr 1e-3 --val-every 250 --patience 8 --generate 4000 --seed 1 --overwrite"
if [[ $what == recon || $what == all ]]; then
  # the 2020 study: 100 Cartesian gluon particles, latent 20, β = 0.1
  for loss in mse chamfer chamfer-physics; do
    $J train vae --data $D/g100_cartesian.npy --particles 100 --loss $loss --beta 0.1 --latent 20 \
      --steps 3000 $common --quick-eval --out runs/exp-vae100-$loss
  done
fi
if [[ $what == anomaly || $what == all ]]; then
  # autoencoders trained on gluons (30 particles, relative), tops and quarks scored
  for loss in mse chamfer sinkhorn; do
    $J train ae --data $D/g.hdf5 --loss $loss --latent 20 --steps 3000 $common --quick-eval \
      --out runs/exp-ae-g-$loss
    for sig in t q; do
      $J anomaly --model runs/exp-ae-g-$loss --background $D/g.hdf5 --signal $D/$sig.hdf5 --n 10000 \
        --json runs/exp-ae-g-$loss/anomaly_$sig.json --plots runs/exp-ae-g-$loss/anomaly_$sig
    done
  done
fi
if [[ $what == sweep || $what == all ]]; then
  # the EMD-VAE's dimensionful β swept down and back up (Collins): KL per dimension and
  # D = −dKL/d log β over the sweep
  $J train vae --data $D/g.hdf5 --loss sinkhorn --beta 0.2 --beta-end 0.005 --beta-schedule anneal-and-back \
    --latent 20 --steps 3000 --batch 100 --val-every 100 --patience 1000 --generate 2000 --quick-eval \
    --seed 1 --overwrite --out runs/exp-emdvae-sweep
fi
if [[ $what == prior || $what == all ]]; then
  # (on the 100-particle VAE the full evaluation of three samples did not fit the session;
  # the 30-particle Chamfer AE instead, whose Gaussian is fitted to its codes)
  $J latent --model runs/exp-ae-g-chamfer --steps 1000 --generate 1000
fi
if [[ $what == quark || $what == all ]]; then
  # top vs light quark: an autoencoder trained on quarks
  $J train ae --data $D/q.hdf5 --loss chamfer --latent 20 --steps 3000 $common --quick-eval --out runs/exp-ae-q-chamfer
  $J anomaly --model runs/exp-ae-q-chamfer --background $D/q.hdf5 --signal $D/t.hdf5 --n 10000 \
    --json runs/exp-ae-q-chamfer/anomaly_t.json --plots runs/exp-ae-q-chamfer/anomaly_t
fi
