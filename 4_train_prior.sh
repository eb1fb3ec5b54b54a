#!/usr/bin/env bash
# Step 4: train (or fine-tune) the STEVE-1 prior, the CVAE that turns a MineCLIP text embedding into a
# visual goal embedding. Edit the variables below, then run from the repo root: bash 4_train_prior.sh
# The original data.pkl (WITH_PRIOR_DATASET=1 bash download_weights.sh) is a pickle: convert it once with
#   .venv/bin/python prior_model/train_prior.py --data_path data/prior_dataset/data.pkl --trust_pickle --convert_only
# An existing OUTPUT_PATH (a prior trained earlier) is kept: the run is refused unless OVERWRITE=1.
set -euo pipefail
# The on/off rule every script shares: `switches NAME...` (1/true/yes on; 0/false/no/empty off; else refused)
source "$(dirname "${BASH_SOURCE[0]}")/toolkit_utils/switches.sh"

# Pairs to train on: our .npz (text_embeds, visual_embeds, optional texts) or a .pkl (needs TRUST_PICKLE)
DATA_PATH=${DATA_PATH:-data/prior_dataset/data.npz}
# On/off (1/true/yes on; 0/false/no/empty off): read a .pkl dataset (unpickling can run arbitrary code: only for
# files you trust); off: a .pkl is refused
TRUST_PICKLE=${TRUST_PICKLE:-}
# Prior to start from (e.g. data/weights/steve1/steve1_prior.pt); empty: train from scratch like the original
IN_WEIGHTS=${IN_WEIGHTS:-}
# Where the best-on-validation prior goes (steve1_prior.pt format; pass it to run_agent.py --prior_weights)
OUTPUT_PATH=${OUTPUT_PATH:-data/weights/steve1/steve1_prior_finetuned.pt}
# On/off (1/true/yes on; 0/false/no/empty off): replace an existing OUTPUT_PATH (off: refuse, keeping it)
OVERWRITE=${OVERWRITE:-}
# Pairs per optimizer step
BATCH_SIZE=${BATCH_SIZE:-256}
# AdamW learning rate (constant)
LR=${LR:-1e-4}
# Passes over the training pairs
N_EPOCHS=${N_EPOCHS:-50}
# Pairs held out for validation (the best epoch on them is kept)
N_VALIDATION=${N_VALIDATION:-200}
# Weight of the KL term (the KL is summed over the batch, as in the original)
BETA=${BETA:-1.0}
# Seed of the train/val split, initialisation and noise
SEED=${SEED:-0}
# TensorBoard directory, which also gets the text log train_prior.log (view with: .venv/bin/tensorboard --logdir logs/prior)
LOG_DIR=${LOG_DIR:-logs/prior/run_$(date +%Y%m%d-%H%M%S)}
# Python interpreter with the toolkit installed
PYTHON=${PYTHON:-.venv/bin/python}

switches TRUST_PICKLE OVERWRITE  # now 1 or empty; any other value was refused (exit 2)
# Train; prints the settings, one line per epoch and "New best validation loss" when the output is written.
"$PYTHON" prior_model/train_prior.py \
  --data_path "$DATA_PATH" \
  ${TRUST_PICKLE:+--trust_pickle} \
  ${IN_WEIGHTS:+--in_weights "$IN_WEIGHTS"} \
  --output_path "$OUTPUT_PATH" \
  ${OVERWRITE:+--overwrite} \
  --batch_size "$BATCH_SIZE" \
  --lr "$LR" \
  --n_epochs "$N_EPOCHS" \
  --n_validation "$N_VALIDATION" \
  --beta "$BETA" \
  --seed "$SEED" \
  --log_dir "$LOG_DIR"
