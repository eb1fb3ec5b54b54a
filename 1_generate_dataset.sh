#!/usr/bin/env bash
# Step 1: download VPT contractor recordings and convert them into training episodes (128x128 frames,
# actions, one MineCLIP embedding per frame); optionally convert your own recordings too.
# Edit the variables (or set them in the environment), then run from the repo root: bash 1_generate_dataset.sh
# Safe to re-run: finished episodes are skipped and interrupted downloads resume.
set -euo pipefail

# Recordings to convert per index (-1: all of them; an index holds thousands of ~5 minute recordings)
N_EPISODES_CONTRACTOR=${N_EPISODES_CONTRACTOR:-5}
# Contractor indexes (space-separated): 6.x 7.x 8.x 9.x 10.x basalt-find-cave ..., an index URL or a local index file
INDEXES=${INDEXES:-"8.x 9.x 10.x"}
# Where converted episodes go, and where downloads wait until converted
OUTPUT_DIR=${OUTPUT_DIR:-data/dataset_contractor}
CACHE_DIR=${CACHE_DIR:-data/contractor_cache}
# MineCLIP weights for the goal embeddings (download_weights.sh); DEMO_RANDOM_MINECLIP=1 uses random weights (demo only)
MINECLIP_WEIGHTS=${MINECLIP_WEIGHTS:-data/weights/mineclip/attn.pth}
DEMO_RANDOM_MINECLIP=${DEMO_RANDOM_MINECLIP:-}
# Frames per MineCLIP forward (GPU: 256-1024)
BATCH_SIZE=${BATCH_SIZE:-256}
# Recordings downloaded in parallel ahead of conversion
DOWNLOAD_WORKERS=${DOWNLOAD_WORKERS:-4}
# Split the recordings over several machines/processes: this one is WORKER_ID of NUM_WORKERS
WORKER_ID=${WORKER_ID:-0}
NUM_WORKERS=${NUM_WORKERS:-1}
# Skip recordings with fewer frames than this after dropping null actions
MIN_TIMESTEPS=${MIN_TIMESTEPS:-1000}
# Your own recordings (episode_xxx/video.mp4 + actions.jsonl); empty: none
CUSTOM_INPUT_DIR=${CUSTOM_INPUT_DIR:-}
CUSTOM_OUTPUT_DIR=${CUSTOM_OUTPUT_DIR:-data/dataset_custom}
# VPT's inverse dynamics model: labels your recordings that have no actions.jsonl (ONLY=idm bash download_weights.sh)
IDM_MODEL=${IDM_MODEL:-data/weights/vpt/4x_idm.model}
IDM_WEIGHTS=${IDM_WEIGHTS:-data/weights/vpt/4x_idm.weights}
PYTHON=${PYTHON:-.venv/bin/python}

MINECLIP_ARGS=(--mineclip_weights "$MINECLIP_WEIGHTS")
if [ -n "$DEMO_RANDOM_MINECLIP" ]; then MINECLIP_ARGS=(--demo_random_mineclip); fi
status=0
for INDEX in $INDEXES; do
  "$PYTHON" data/generation/convert_from_contractor.py --index "$INDEX" --num_episodes "$N_EPISODES_CONTRACTOR" \
    --output_dir "$OUTPUT_DIR" --cache_dir "$CACHE_DIR" "${MINECLIP_ARGS[@]}" --batch_size "$BATCH_SIZE" \
    --download_workers "$DOWNLOAD_WORKERS" --worker_id "$WORKER_ID" --num_workers "$NUM_WORKERS" \
    --min_timesteps "$MIN_TIMESTEPS" || status=1
done
if [ -n "$CUSTOM_INPUT_DIR" ]; then
  "$PYTHON" data/generation/convert_custom_data.py --input_dir "$CUSTOM_INPUT_DIR" --output_dir "$CUSTOM_OUTPUT_DIR" \
    "${MINECLIP_ARGS[@]}" --batch_size "$BATCH_SIZE" --idm_model "$IDM_MODEL" --idm_weights "$IDM_WEIGHTS" || status=1
fi
# Check what was written: one line per episode
"$PYTHON" data/EpisodeStorage.py --validate "$OUTPUT_DIR" --no_decode || status=1
exit $status
