#!/usr/bin/env bash
# Session 12's interleaved comparison: OLD = the tree before the packed-panel GEMM took over
# gemm_raw (4f83a3e, built in a worktree), NEW = this commit, and the PyTorch peers, one
# after the other on the same 2-core machine. Usage: run.sh OLD_BINARY NEW_BINARY OUTDIR
set -u
OLD=$1; NEW=$2; R=$3
source ~/.venvs/jetgen-peers/bin/activate
P=benches/peers
for round in 1 2; do
  $OLD bench fm --threads 2 --iters 5 --batch 256 --json $R/fm-old-$round.json > $R/fm-old-$round.txt 2>&1
  python $P/torch_epic_fm.py --threads 2 --iters 5 --batch 256 --json $R/fm-torch-$round.json > $R/fm-torch-$round.txt 2>&1
  $NEW bench fm --threads 2 --iters 5 --batch 256 --json $R/fm-new-$round.json > $R/fm-new-$round.txt 2>&1
  $OLD bench vae --threads 2 --iters 10 --json $R/vae-old-$round.json > $R/vae-old-$round.txt 2>&1
  python $P/torch_vae.py --threads 2 --iters 10 --json $R/vae-torch-$round.json > $R/vae-torch-$round.txt 2>&1
  $NEW bench vae --threads 2 --iters 10 --json $R/vae-new-$round.json > $R/vae-new-$round.txt 2>&1
  $OLD bench mpgan --threads 2 --iters 3 --json $R/mpgan-old-$round.json > $R/mpgan-old-$round.txt 2>&1
  python $P/torch_mpgan.py --batch 32 --threads 2 --iters 5 --json $R/mpgan-torch-$round.json > $R/mpgan-torch-$round.txt 2>&1
  $NEW bench mpgan --threads 2 --iters 3 --json $R/mpgan-new-$round.json > $R/mpgan-new-$round.txt 2>&1
done
# the flow training step against nflows, and generation of 10k jets per family (one round)
$OLD bench generate --threads 2 --iters 3 --json $R/gen-old.json > $R/gen-old.txt 2>&1
python ../shared/peers/bench_kernels.py --only flow_step --threads 2 --out $R/flow-nflows.json > $R/flow-nflows.txt 2>&1
$NEW bench generate --threads 2 --iters 3 --json $R/gen-new.json > $R/gen-new.txt 2>&1
