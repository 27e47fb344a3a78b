#!/usr/bin/env bash
# Installs PyTorch 2.9.0 from PyPI into a virtual environment: $DLM_TORCH_VENV if set, else the
# project-local .venv-torch/ (git-ignored). For two uses:
#   - burn's `tch` backend (libtorch): `--features tch` builds against the wheel's C++ libraries
#     with LIBTORCH_USE_PYTORCH=1, offline; tch 0.22 (burn 0.22.1) expects exactly torch 2.9.0;
#   - the PyTorch baseline of the benchmarks (scripts/bench_torch.py), run by hand.
#
# Usage: scripts/setup-torch.sh            installs (idempotent: an installed 2.9.0 is kept)
#        source <(scripts/setup-torch.sh --env)
#                                          exports what building and running with `tch` needs:
#                                          the venv first on PATH, LIBTORCH_USE_PYTORCH=1, and the
#                                          wheel's torch/lib on LD_LIBRARY_PATH
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${DLM_TORCH_VENV:-$PWD/.venv-torch}"
TORCH_VERSION=2.9.0

installed() {
  [ -x "$VENV/bin/python" ] &&
    [ "$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" = "$TORCH_VERSION" ]
}

if [ "${1:-}" = "--env" ]; then
  installed || { echo "echo 'run scripts/setup-torch.sh first' >&2; false"; exit 1; }
  lib=$("$VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  echo "export PATH=\"$VENV/bin:\$PATH\""
  echo "export LIBTORCH_USE_PYTORCH=1"
  echo "export LD_LIBRARY_PATH=\"$lib:\${LD_LIBRARY_PATH:-}\""
  exit 0
fi

if installed; then
  echo "torch $TORCH_VERSION already in $VENV"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The PyPI wheel for Linux carries the CUDA runtime libraries (nvidia-* wheels) beside the CPU
# kernels: libtorch_cuda links against them, so they are installed too.
"$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" numpy
echo "torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') in $VENV"
