#!/usr/bin/env bash
# Create (or update) the toolkit's virtual environment in .venv and install everything the
# scripts and tests need. Safe to re-run: when nothing it installs from has changed, it checks and
# returns in about a second. Usage: bash setup_env.sh   (run_example.sh and run_tests.sh call it)
#   BASE_PYTHON=python3.11 bash setup_env.sh   # the interpreter that builds .venv (default: python3)
#   TORCH_SPEC="torch==2.13.0" ...             # which torch to install when none is present
#   FORCE_SETUP=1 ...                           # reinstall the requirements even when nothing changed
#                                               # (on/off: 1/true/yes on; 0/false/no/empty off; else refused)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
# PYTHON names the interpreter that RUNS a step in the numbered scripts (.venv/bin/python); the one that
# builds .venv is BASE_PYTHON. An old `PYTHON=python3.11 bash setup_env.sh` must not be ignored silently.
if [ -n "${PYTHON:-}" ] && [ -z "${BASE_PYTHON:-}" ] && [ "$(realpath -m "$PYTHON")" != "$(realpath -m "$VENV/bin/python")" ]; then
  echo "setup_env.sh: PYTHON=$PYTHON is not read here; set BASE_PYTHON=$PYTHON to build .venv with that interpreter" >&2
  exit 2
fi
BASE_PYTHON="${BASE_PYTHON:-python3}"
CLIP_SPEC="clip-anytorch==2.6.0"
STAMP="$VENV/.toolkit-setup-stamp"
# The on/off rule every script shares (toolkit_utils/switches.sh): FORCE_SETUP becomes 1 or empty, or is refused
source "$REPO_ROOT/toolkit_utils/switches.sh"
switches FORCE_SETUP

# What the environment is built from; when it is unchanged and the packages are there, there is nothing to do.
inputs_hash() {
  cat "$REPO_ROOT/requirements.txt" "$REPO_ROOT/requirements-test.txt" "$REPO_ROOT/pyproject.toml" \
    | { cat; echo "$TORCH_SPEC $CLIP_SPEC $VENV"; } | sha256sum | cut -d' ' -f1
}
packages_present() {  # find_spec only: no import, so this takes well under a second
  "$VENV/bin/python" - <<'EOF' 2>/dev/null
import importlib.util, sys
names = ["torch", "accelerate", "av", "cv2", "numpy", "tensorboard", "tqdm", "safetensors", "matplotlib", "ftfy",
         "regex", "tokenizers", "gym", "pytest", "clip", "data", "training", "vpt_model", "rollout", "embed_conditioned_policy",
         "run_agent"]
sys.exit(0 if all(importlib.util.find_spec(n) for n in names) else 1)
EOF
}

if [ -z "$FORCE_SETUP" ] && [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] \
   && [ "$(cat "$STAMP")" = "$(inputs_hash)" ] && packages_present; then
  echo "[setup] $VENV is up to date (requirements unchanged; FORCE_SETUP=1 reinstalls)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $BASE_PYTHON ($("$BASE_PYTHON" --version 2>&1))"
  "$BASE_PYTHON" -m venv "$VENV"
fi
rm -f "$STAMP"
# pip's own progress is shown (what it collects, downloads and installs); "already satisfied" lines are not.
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar on)
quiet_satisfied() { grep --line-buffered -v -e "^Requirement already satisfied" -e "^WARNING: Location .* is ignored" || true; }
# torch first and on its own: an unpinned torch drags in a multi-GB CUDA build on CPU machines.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # Measured for torch 2.13.0+cpu (cp311, manylinux x86_64): a 192 MB wheel, 754 MB installed.
  echo "[setup] 1/4 installing $TORCH_SPEC (the largest download: 192 MB for the CPU build, several GB for a CUDA build)"
  "${PIP[@]}" "$TORCH_SPEC" 2>&1 | quiet_satisfied
else
  echo "[setup] 1/4 torch is installed: $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
fi
echo "[setup] 2/4 installing requirements.txt and requirements-test.txt"
"${PIP[@]}" -r "$REPO_ROOT/requirements.txt" -r "$REPO_ROOT/requirements-test.txt" 2>&1 | quiet_satisfied
# The OpenAI CLIP BPE vocabulary (MineCLIP's tokenizer) ships inside clip-anytorch; only its data
# file is used, so its torchvision dependency is skipped on purpose.
echo "[setup] 3/4 installing the CLIP BPE vocabulary ($CLIP_SPEC, data file only)"
"${PIP[@]}" --no-deps "$CLIP_SPEC" 2>&1 | quiet_satisfied
# Make the repo's packages importable from anywhere (scripts run as `python data/x.py`).
echo "[setup] 4/4 installing this repo in editable mode"
"${PIP[@]}" --no-deps --no-build-isolation -e "$REPO_ROOT" 2>&1 | quiet_satisfied
# pipefail: a failed pip install fails the pipeline above and stops here (set -e).
packages_present || { echo "[setup] some packages are still missing after the install: see pip's messages above" >&2; exit 1; }
inputs_hash > "$STAMP"
echo "[setup] ready: $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
