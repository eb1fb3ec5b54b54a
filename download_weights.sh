#!/usr/bin/env bash
# Download the pretrained files into data/weights/ (VPT, MineCLIP, STEVE-1 agent and prior).
# Edit the variables below, then run from the repo root: bash download_weights.sh
# Safe to re-run: complete files are skipped and interrupted HTTP downloads resume.
# Google Drive files need gdown (.venv/bin/pip install gdown); without it the exact manual steps are printed.
# The on/off rule every script shares: `switches NAME...` (1/true/yes on; 0/false/no/empty off; else refused)
source "$(dirname "${BASH_SOURCE[0]}")/toolkit_utils/switches.sh"

# Which files: vpt | mineclip | steve1 | idm (VPT's inverse dynamics model, labels recordings without actions) | all
ONLY=${ONLY:-all}
# On/off (1/true/yes on; 0/false/no/empty off): also fetch the prior's training pairs (data/prior_dataset/data.pkl, a pickle)
WITH_PRIOR_DATASET=${WITH_PRIOR_DATASET:-}
# Root the files are placed under (the guide's scripts expect data)
DATA_DIR=${DATA_DIR:-data}
# Where the VPT files are served (OpenAI's public bucket)
BASE_URL=${BASE_URL:-https://openaipublic.blob.core.windows.net/minecraft-rl/models/}
# Where the IDM files (4x_idm.model, 4x_idm.weights) are served
IDM_BASE_URL=${IDM_BASE_URL:-https://openaipublic.blob.core.windows.net/minecraft-rl/idm/}
# Python interpreter with the toolkit installed
PYTHON=${PYTHON:-.venv/bin/python}

switches WITH_PRIOR_DATASET  # now 1 or empty; any other value was refused (exit 2)
# Download; ends with a summary and exit status 0 only when every selected file is in place.
"$PYTHON" data/weights_download.py \
  --only "$ONLY" \
  ${WITH_PRIOR_DATASET:+--with_prior_dataset} \
  --data_dir "$DATA_DIR" \
  --base_url "$BASE_URL" \
  --idm_base_url "$IDM_BASE_URL"
