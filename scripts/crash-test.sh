#!/usr/bin/env bash
# Kills a checkpointing training run (examples/crash_resume.rs) with `kill -9` at random moments,
# restarts it until it finishes, and checks, for every interrupted run, that the latest
# checkpoint always loaded and that the loss curve equals the uninterrupted run's bit for bit.
#
#   scripts/crash-test.sh            # 20 interrupted runs of 40 steps
#   scripts/crash-test.sh 5 20       # 5 runs of 20 steps
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
steps="${2:-40}"
cargo build --release --example crash_resume
target="${CARGO_TARGET_DIR:-target}"
binary="$target/release/examples/crash_resume"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# One well-formed line per step, in step order (a redone step repeats its line).
curve() { grep -E '^[0-9]+,[0-9a-f]{16}$' "$1" | sort -t, -k1,1n -u -s | awk -F, '{print $1","$2}'; }

"$binary" --dir "$work/reference" --steps "$steps"
curve "$work/reference/losses.csv" > "$work/reference.curve"
[ "$(wc -l < "$work/reference.curve")" -eq "$steps" ] || { echo "reference: not $steps steps"; exit 1; }

# How long one step takes, to spread the kills over the run.
start=$(date +%s%N); "$binary" --dir "$work/timing" --steps "$steps" >/dev/null; end=$(date +%s%N)
run_ms=$(( (end - start) / 1000000 ))

kills=0
for run in $(seq 1 "$runs"); do
  dir="$work/run-$run"
  for attempt in 1 2 3; do
    # Up to three kills per run, each at a random moment of the whole run's duration.
    delay_ms=$(( RANDOM % (run_ms + 1) ))
    "$binary" --dir "$dir" --steps "$steps" & pid=$!
    sleep "$(awk "BEGIN {print $delay_ms / 1000}")"
    if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
    wait "$pid" 2>/dev/null || true
  done
  # Finish the run; a checkpoint that does not load fails here.
  "$binary" --dir "$dir" --steps "$steps"
  # Duplicated steps (redone after a kill) must repeat the same loss, bit for bit.
  if grep -E '^[0-9]+,[0-9a-f]{16}$' "$dir/losses.csv" | sort -u | cut -d, -f1 | uniq -d | grep -q .; then
    echo "run $run: a redone step gave another loss"; exit 1
  fi
  if ! diff -q <(curve "$dir/losses.csv") "$work/reference.curve" >/dev/null; then
    echo "run $run: the loss curve differs from the uninterrupted run"; exit 1
  fi
done
echo "crash test passed: $runs runs of $steps steps, $kills kill -9s, every curve equal to the uninterrupted one bit for bit"
