#!/usr/bin/env bash
# Step 2: split the converted episodes into training and validation lists for step 3.
# Edit the variables, then run from the repo root: bash 2_create_sampling.sh
# Writes $OUTPUT_DIR/${NAME}_train.txt, ${NAME}_val.txt and ${NAME}_summary.json. Running it again with the same
# result writes nothing; a different result for an existing NAME is refused (another NAME, or OVERWRITE=1).
set -euo pipefail
# The on/off rule every script shares: `switches NAME...` (1/true/yes on; 0/false/no/empty off; else refused)
source "$(dirname "${BASH_SOURCE[0]}")/toolkit_utils/switches.sh"
# SEED is the training seed in 3_train_finetune_template.sh; the split has its own, SPLIT_SEED.
if [ -n "${SEED+set}" ]; then
  echo "2_create_sampling.sh: SEED is set (${SEED}) but no longer chooses the split; set SPLIT_SEED instead (and unset SEED)" >&2
  exit 2
fi

# neurips: one dataset; mixed: several datasets sharing the frame budget by DATASET_WEIGHTS
TYPE=${TYPE:-neurips}
# Sampling name: 3_train*.sh reads it as SAMPLING_NAME
NAME=${NAME:-finetune}
# Where the lists go
OUTPUT_DIR=${OUTPUT_DIR:-data/samplings}
# Dataset directories from step 1 (comma-separated; mixed: e.g. data/dataset_contractor,data/dataset_custom)
DATASET_DIRS=${DATASET_DIRS:-data/dataset_contractor}
# mixed only: share of the frames per dataset (e.g. 0.8,0.2 keeps 20% old data against forgetting); relative shares,
# normalised to sum 1 (4,1 is 0.8,0.2), the summary prints each dataset's weight
DATASET_WEIGHTS=${DATASET_WEIGHTS:-}
# Frames held out for validation (whole episodes)
VAL_FRAMES=${VAL_FRAMES:-20000}
# Frames for training; -1 = all the rest
TRAIN_FRAMES=${TRAIN_FRAMES:--1}
# Reuse the validation episodes of an earlier sampling name (keeps val loss comparable); empty: new split
VAL_FROM=${VAL_FROM:-}
# The T you will train with: shorter episodes (< T + 15 frames) are left out
T=${T:-320}
# Shuffle seed of the split (same seed + same data = same lists on any machine); not the training SEED
SPLIT_SEED=${SPLIT_SEED:-0}
# On/off (1/true/yes on; 0/false/no/empty off): replace an existing sampling NAME whose lists differ (off: refuse)
OVERWRITE=${OVERWRITE:-}
# On/off: accept episodes embedded with random MineCLIP weights (step 1's DEMO_RANDOM_MINECLIP; a pipeline demo only)
ALLOW_DEMO_EMBEDDINGS=${ALLOW_DEMO_EMBEDDINGS:-}
# Python interpreter with the toolkit installed
PYTHON=${PYTHON:-.venv/bin/python}

switches OVERWRITE ALLOW_DEMO_EMBEDDINGS  # now 1 or empty; any other value was refused (exit 2)
"$PYTHON" data/sampling/generate_sampling.py \
  --type "$TYPE" --name "$NAME" --output_dir "$OUTPUT_DIR" \
  --dataset_dirs "$DATASET_DIRS" ${DATASET_WEIGHTS:+--dataset_weights "$DATASET_WEIGHTS"} \
  --val_frames "$VAL_FRAMES" --train_frames "$TRAIN_FRAMES" ${VAL_FROM:+--val_from "$VAL_FROM"} \
  --T "$T" --split_seed "$SPLIT_SEED" ${OVERWRITE:+--overwrite} ${ALLOW_DEMO_EMBEDDINGS:+--allow_demo_embeddings}
