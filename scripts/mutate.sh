#!/usr/bin/env bash
# Run the readers' mutation tests (tests/mutation.rs) for a long time — the stand-in for
# cargo-fuzz, which needs a nightly toolchain. Every failing input (a panic, a hang, an
# allocation far beyond the file's size) is kept under tests/mutation_cases/<reader>/,
# where `cargo test --test mutation` replays it from then on.
#
#   scripts/mutate.sh [HOURS] [FIRST_SEED]      # default: 1 hour, seed 1000
#
# It runs in rounds of (at most) 10 minutes with fresh seeds, so a crash that takes the process
# down (an abort cannot be caught) costs one round; the round's log is kept in
# target/mutate/.
set -u
cd "$(dirname "$0")/.."
hours=${1:-1}
seed=${2:-1000}
end=$(( $(date +%s) + $(awk -v h="$hours" 'BEGIN { printf "%d", h * 3600 }') ))
mkdir -p target/mutate
cargo test --test mutation --no-run || exit 1  # the test profile is optimised (opt-level 2)
round=0
failed=0
while [ "$(date +%s)" -lt "$end" ]; do
  round=$((round + 1))
  log=target/mutate/round-$round.log
  current=target/mutate/current.bin
  rm -f "$current" target/mutate/current.reader
  left=$((end - $(date +%s)))
  secs=$(( left < 600 ? left : 600 ))
  JETGEN_MUTATE_SECONDS=$secs JETGEN_MUTATE_SEED=$seed JETGEN_MUTATE_CURRENT=$PWD/$current \
    cargo test --test mutation -- --ignored --nocapture mutate_for_a_long_time \
    >"$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    failed=$((failed + 1))
    echo "round $round (seeds from $seed): failures, see $log"
    if ! grep -q "failing cases" "$log" && [ -f "$current" ]; then
      # the process died on an input (abort, out of memory): keep that input
      reader=$(cat target/mutate/current.reader)
      mkdir -p "tests/mutation_cases/$reader"
      cp "$current" "tests/mutation_cases/$reader/crash-seed$seed-round$round.bin"
      echo "  kept the input that killed it: tests/mutation_cases/$reader/crash-seed$seed-round$round.bin"
    fi
  else
    grep -h "mutated inputs" "$log"
  fi
  # each round advances the seed well past what it could have used
  seed=$((seed + 100000))
done
echo "$round rounds, $failed with failures; regression cases: tests/mutation_cases/"
ls -R tests/mutation_cases | grep -c '\.bin$' || true
[ $failed -eq 0 ]
