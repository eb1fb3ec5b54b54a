#!/usr/bin/env bash
# Step 3 (from scratch): train STEVE-1 from VPT's rl-from-foundation-2x weights with the paper's recipe.
# Needs a large sampling (the paper used ~100M frames) and days of GPU time. Running it again resumes
# from CHECKPOINT_DIR. Watch it: tensorboard --logdir $CHECKPOINT_DIR/logs
# The values below override the fine-tuning template's defaults; everything else is set there.
set -euo pipefail

export SAMPLING_NAME=${SAMPLING_NAME:-neurips}
export OUT_WEIGHTS=${OUT_WEIGHTS:-data/weights/steve1/trained_with_script.weights}
# VPT weights: the STEVE-1 goal layer is not in them and starts from its initialisation (the log says so)
export IN_WEIGHTS=${IN_WEIGHTS:-data/weights/vpt/rl-from-foundation-2x.weights}
export LEARNING_RATE=${LEARNING_RATE:-4e-5}
export TOTAL_FRAMES=${TOTAL_FRAMES:-100_000_000}
export WARMUP_FRAMES=${WARMUP_FRAMES:-10_000_000}
export BATCH_SIZE=${BATCH_SIZE:-12}
export GRADIENT_ACCUM_STEPS=${GRADIENT_ACCUM_STEPS:-4}
export T=${T:-640}
export TRUNC_T=${TRUNC_T:-64}
export VAL_FREQ=${VAL_FREQ:-1000}
export VAL_FREQ_BEGIN=${VAL_FREQ_BEGIN:-100}
export VAL_FREQ_SWITCH_STEPS=${VAL_FREQ_SWITCH_STEPS:-500}
export SAVE_FREQ=${SAVE_FREQ:-1000}
export SNAPSHOT_FRAMES=${SNAPSHOT_FRAMES:-50_000_000}
export P_UNCOND=${P_UNCOND:-0.1}
export MIN_BTWN_GOALS=${MIN_BTWN_GOALS:-15}
export MAX_BTWN_GOALS=${MAX_BTWN_GOALS:-200}
export CHECKPOINT_DIR=${CHECKPOINT_DIR:-data/training_checkpoint}

exec bash "$(dirname "${BASH_SOURCE[0]}")/3_train_finetune_template.sh" "$@"
