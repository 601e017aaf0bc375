#!/bin/bash
# MPGAN (MP-MP) g/q/t table at a stated CPU budget, session 16: 150 generator steps at batch
# 64 (1 critic step each; MPGAN uses 256: at a fixed CPU budget 4x more updates), MPGAN's args.txt per class (LSGAN, RMSprop; lr G/D g 1e-5/3e-5,
# q 5e-6/1.5e-5, t 2e-5/6e-5), the three classes side by side on the 2 cores, one thread each.
# (A first try at 10x these learning rates and batch 64 saturated the critic: D loss 1.000.)
cd /work/main
D=../shared/data/jetnet-like
run() { # class lr_g lr_d
  RAYON_NUM_THREADS=1 /usr/bin/time -v /work/runs/jetgen-s16 train gan --generator mp --discriminator mp --loss ls \
    --data $D/$1.hdf5 --steps 150 --batch 64 --lr-g $2 --lr-d $3 --val-every 25 --val-jets 500 \
    --generate 2000 --seed 0 --out /work/runs/mpgan-$1-s16 --overwrite > /work/runs/mpgan-$1-s16.log 2>&1
}
run g 1e-5 3e-5 &
run q 5e-6 1.5e-5 &
run t 2e-5 6e-5 &
wait
