#!/usr/bin/env bash
# Runs every fuzz target of tests/fuzz.rs for a fixed time each (release build, one at a time).
#
#   scripts/fuzz.sh              # 600 s per target
#   scripts/fuzz.sh 60 7         # 60 s per target, seed 7
#   scripts/fuzz.sh 600 1 tokenizer_files pretrained_checkpoints   # only these targets
#
# A target with several kinds of input (pretrained_checkpoints: weights, then config files) runs
# each for the given time.
# A target that panics writes its input to target/fuzz-crashes/ and the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
seed="${2:-0}"
all="checkpoint_files token_cache_entries tokenizer_files hugging_face_weights pretrained_checkpoints config_json"
targets="${*:3}"
for target in ${targets:-$all}; do
  # The tokenizers crate prints the panics the loader catches; only the verdict lines matter.
  DLM_FUZZ_SECONDS="$seconds" DLM_FUZZ_SEED="$seed" \
    cargo test --release --test fuzz "$target" -- --exact --nocapture 2>&1 \
    | grep -E "inputs in|saved to|test result"
done
