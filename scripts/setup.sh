#!/usr/bin/env bash
# Create .venv and install dualip_model with its test extras. Without an NVIDIA GPU, torch is pinned to
# the CPU build 2.13.0 (an unpinned torch would pull a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  torch_req="torch>=2.2"
else
  torch_req="torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "$torch_req" -e ".[test]"
# the fused C++ kernels (the CPU engine "auto" takes from 1e4 columns on) are built once here rather than at the first
# large solve; without a C++ compiler the torch kernels run instead
.venv/bin/python -c "from dualip_model.backends.dualip.fused_cpu import prebuild; print(prebuild())"
