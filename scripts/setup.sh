#!/usr/bin/env bash
# Create .venv (if missing) and install LiveLayers with its test tools.
# torch/torchvision: the CUDA builds also run on CPU, and unlike the CPU-only
# wheel they come with a matching torchvision (open_clip needs it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch, torchvision" 2>/dev/null \
  || .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test]"
