#!/usr/bin/env bash
# Step 1: download VPT contractor recordings and convert them into training episodes (128x128 frames,
# actions, one MineCLIP embedding per frame); optionally convert your own recordings too; then check them.
# Edit the variables (or set them in the environment), then run from the repo root: bash 1_generate_dataset.sh
# Safe to re-run: finished episodes are skipped and interrupted downloads resume. Each failed recording is one
# FAIL line; the run goes on and ends with a summary (exit status 1 if anything failed).
set -euo pipefail
# The on/off rule every script shares: `switches NAME...` (1/true/yes on; 0/false/no/empty off; else refused)
source "$(dirname "${BASH_SOURCE[0]}")/toolkit_utils/switches.sh"

# Recordings to convert per index (-1: all of them; an index holds thousands of ~5 minute recordings)
N_EPISODES_CONTRACTOR=${N_EPISODES_CONTRACTOR:-5}
# Contractor indexes (space-separated): 6.x 7.x 8.x 9.x 10.x basalt-find-cave ..., index URLs or local index files; "" for none
INDEXES=${INDEXES-"8.x 9.x 10.x"}
# Where converted episodes go, and where downloads wait until converted (one conversion per directory at a time)
OUTPUT_DIR=${OUTPUT_DIR:-data/dataset_contractor}
CACHE_DIR=${CACHE_DIR:-data/contractor_cache}
# MineCLIP weights for the goal embeddings (download_weights.sh)
MINECLIP_WEIGHTS=${MINECLIP_WEIGHTS:-data/weights/mineclip/attn.pth}
# On/off (1/true/yes on; 0/false/no/empty off): random MineCLIP weights instead, for a demo only (meaningless goals)
DEMO_RANDOM_MINECLIP=${DEMO_RANDOM_MINECLIP:-}
# Frames per MineCLIP forward (GPU: 256-1024)
MINECLIP_BATCH_SIZE=${MINECLIP_BATCH_SIZE:-256}
# Conversion processes, each with its own MineCLIP copy (empty: one per core)
JOBS=${JOBS:-}
# Recordings downloaded in parallel ahead of conversion
DOWNLOAD_WORKERS=${DOWNLOAD_WORKERS:-4}
# Split the recordings over machines: this one is WORKER_ID of NUM_WORKERS (each machine its own OUTPUT_DIR)
WORKER_ID=${WORKER_ID:-0}
NUM_WORKERS=${NUM_WORKERS:-1}
# Skip recordings with fewer frames than this after dropping null actions (step 2 needs T + 15 frames per episode)
MIN_TIMESTEPS=${MIN_TIMESTEPS:-1000}
# Video frames and action lines may differ by this many (trimmed to the shorter); a larger difference fails the recording
MAX_LENGTH_MISMATCH=${MAX_LENGTH_MISMATCH:-2}
# Labelling rules (README, step 1): the original's by default; "float"/"agent" are the VPT paper's
CAMERA_LABELS=${CAMERA_LABELS:-truncated}
NULL_FILTER=${NULL_FILTER:-env}
# Your own recordings (episode_xxx/video.mp4, with or without actions.jsonl); empty: none
CUSTOM_INPUT_DIR=${CUSTOM_INPUT_DIR:-}
CUSTOM_OUTPUT_DIR=${CUSTOM_OUTPUT_DIR:-data/dataset_custom}
# VPT's inverse dynamics model: labels your recordings that have no actions.jsonl (ONLY=idm bash download_weights.sh)
IDM_MODEL=${IDM_MODEL:-data/weights/vpt/4x_idm.model}
IDM_WEIGHTS=${IDM_WEIGHTS:-data/weights/vpt/4x_idm.weights}
# Recordings the IDM labels together per forward (GPU: 4-16)
IDM_BATCH_SIZE=${IDM_BATCH_SIZE:-4}
# IDM precision: fp32 computes what VPT's code computes; bf16 is faster on GPUs (labels can differ where classes are close)
IDM_DTYPE=${IDM_DTYPE:-fp32}
# The interpreter that runs the step (the toolkit's .venv)
PYTHON=${PYTHON:-.venv/bin/python}

switches DEMO_RANDOM_MINECLIP  # now 1 or empty; any other value was refused (exit 2)
# Contractor indexes, then your recordings, then a validation of every dataset written (one Python entrypoint;
# --setting_names script: its messages name the variables above)
"$PYTHON" data/generation/generate_dataset.py --indexes "$INDEXES" --num_episodes "$N_EPISODES_CONTRACTOR" \
  --output_dir "$OUTPUT_DIR" --cache_dir "$CACHE_DIR" --mineclip_weights "$MINECLIP_WEIGHTS" \
  ${DEMO_RANDOM_MINECLIP:+--demo_random_mineclip} --mineclip_batch_size "$MINECLIP_BATCH_SIZE" ${JOBS:+--jobs "$JOBS"} \
  --download_workers "$DOWNLOAD_WORKERS" --worker_id "$WORKER_ID" --num_workers "$NUM_WORKERS" \
  --min_timesteps "$MIN_TIMESTEPS" --max_length_mismatch "$MAX_LENGTH_MISMATCH" --camera_labels "$CAMERA_LABELS" \
  --null_filter "$NULL_FILTER" --custom_input_dir "$CUSTOM_INPUT_DIR" --custom_output_dir "$CUSTOM_OUTPUT_DIR" \
  --idm_model "$IDM_MODEL" --idm_weights "$IDM_WEIGHTS" --idm_batch_size "$IDM_BATCH_SIZE" --idm_dtype "$IDM_DTYPE" \
  --setting_names script
