#!/usr/bin/env bash
# Runs every fuzz target of tests/fuzz.rs for a fixed time each (release build, one at a time).
#
#   scripts/fuzz.sh              # 600 s per target
#   scripts/fuzz.sh 60 7         # 60 s per target, seed 7
#
# A target that panics writes its input to target/fuzz-crashes/ and the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
seed="${2:-0}"
for target in checkpoint_files token_cache_entries tokenizer_files hugging_face_weights pretrained_checkpoints config_json; do
  # The tokenizers crate prints the panics the loader catches; only the verdict lines matter.
  DLM_FUZZ_SECONDS="$seconds" DLM_FUZZ_SEED="$seed" \
    cargo test --release --test fuzz "$target" -- --exact --nocapture 2>&1 \
    | grep -E "inputs in|saved to|test result"
done
