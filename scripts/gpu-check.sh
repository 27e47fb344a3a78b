#!/usr/bin/env bash
# One prepared run for a machine with an NVIDIA GPU and no network: builds with the `wgpu`
# feature (Vulkan on the GPU), runs the backend parity tests and the benches, and prints a
# markdown table of the criterion results for docs/benchmarks.md.
#
# The Vulkan loader is not on a bare GPU machine and cannot be installed there; run
# `scripts/gpu-check.sh --prepare` on a machine with network first: it unpacks Debian's
# libvulkan1 into .gpu-deps/, which then travels with the working tree. The NVIDIA driver
# provides its own Vulkan ICD.
#
# Usage: scripts/gpu-check.sh --prepare      (with network)
#        scripts/gpu-check.sh                (on the GPU machine; about 8 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=.gpu-deps

if [ "${1:-}" = "--prepare" ]; then
  rm -rf "$DEPS" && mkdir -p "$DEPS"
  (cd "$DEPS" && apt-get download libvulkan1 >/dev/null)
  for deb in "$DEPS"/*.deb; do dpkg -x "$deb" "$DEPS/root"; done
  echo "unpacked: $(find "$DEPS/root" -name 'libvulkan.so*' | head -n 1)"
  exit 0
fi

if [ -d "$DEPS/root" ]; then
  lib=$(dirname "$(find "$DEPS/root" -name 'libvulkan.so.1' | head -n 1)")
  export LD_LIBRARY_PATH="$PWD/$lib:${LD_LIBRARY_PATH:-}"
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
chmod 700 "$XDG_RUNTIME_DIR"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true

echo "== parity: wgpu against flex"
cargo test --release -p dlm --features wgpu --test parity -- --nocapture 2>&1 | grep -E "worst|AdamW|test result"

out=$(mktemp -d)
# flex and wgpu in the same run, so the table's ratios are measured side by side.
export BURN_DEVICE=flex,wgpu DLM_BENCH_LARGE=1
for bench in gemm forward train_step sampler gaussian_sampling antiberty; do
  echo "== bench $bench"
  cargo bench --bench "$bench" --features wgpu -- --noplot 2>&1 | tee "$out/$bench.txt" | grep -E "^[a-z_]+/|time:" || true
done

echo
echo "| bench | backend/case | time (median) |"
echo "|---|---|---|"
for f in "$out"/*.txt; do
  awk -v bench="$(basename "$f" .txt)" '
    /^[a-z_]+\/[^ ]+/ { name = $1 }
    /time:/ { gsub(/\[|\]/, ""); print "| " bench " | " name " | " $4 " " $5 " |" }
  ' "$f"
done
