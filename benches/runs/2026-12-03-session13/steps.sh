#!/usr/bin/env bash
# Session 13's interleaved training-step rounds: OLD (a11c044), the PyTorch peer, NEW.
# Usage: steps.sh OLD_BINARY NEW_BINARY OUTDIR
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
done
