#!/usr/bin/env bash
# Create (or update) the toolkit's virtual environment in .venv and install everything the
# scripts and tests need. Safe to re-run. Usage: source setup_env.sh   (or: bash setup_env.sh)
#   PYTHON=python3.11 bash setup_env.sh     # choose the interpreter
#   TORCH_SPEC="torch==2.13.0" ...          # which torch to install when none is present
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# torch first and on its own: an unpinned torch drags in a multi-GB CUDA build on CPU machines.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC"
  "${PIP[@]}" "$TORCH_SPEC"
fi
echo "[setup] installing requirements"
"${PIP[@]}" -r "$REPO_ROOT/requirements.txt" -r "$REPO_ROOT/requirements-test.txt"
# The OpenAI CLIP BPE vocabulary (MineCLIP's tokenizer) ships inside clip-anytorch; only its data
# file is used, so its torchvision dependency is skipped on purpose.
"${PIP[@]}" --no-deps "clip-anytorch==2.6.0"
# Make the repo's packages importable from anywhere (scripts run as `python data/x.py`).
"${PIP[@]}" --no-deps --no-build-isolation -e "$REPO_ROOT"
echo "[setup] ready: $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
