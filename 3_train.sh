#!/usr/bin/env bash
# Step 3 (from scratch): train STEVE-1 from VPT's rl-from-foundation-2x weights with the paper's recipe.
# Needs a large sampling (the paper used ~100M frames) and days of GPU time. Running it again resumes (or says
# it is finished). The values below override the fine-tuning template's defaults; everything else is set there.
#
# Cadence: the original counted one truncated-BPTT window of 12 x 64 = 768 frames as a "step"; here frequencies
# count optimizer steps of 64 x 12 x 4 = 3,072 frames (one GPU). The values below keep the original's cadence in
# frames: validation every 76,800 frames for the first 384,000, then every 768,000 (~130 validations over 100M
# frames), a checkpoint every 768,000 frames, metrics every 76,800. With NUM_PROCESSES GPUs a step holds that
# many times more frames: divide the step counts below by NUM_PROCESSES to keep the same cadence.
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
# 25 optimizer steps x 3,072 frames = 76,800 frames (the original's log_freq 100 windows)
export LOG_FREQ=${LOG_FREQ:-25}
# 250 steps = 768,000 frames per validation; 25 steps = 76,800 before step 125 (384,000 frames)
export VAL_FREQ=${VAL_FREQ:-250}
export VAL_FREQ_BEGIN=${VAL_FREQ_BEGIN:-25}
export VAL_FREQ_SWITCH_STEPS=${VAL_FREQ_SWITCH_STEPS:-125}
# The original validated on every 10th validation sample
export VAL_EVERY_NTH=${VAL_EVERY_NTH:-10}
# 250 steps = 768,000 frames per checkpoint
export SAVE_FREQ=${SAVE_FREQ:-250}
export SNAPSHOT_FRAMES=${SNAPSHOT_FRAMES:-50_000_000}
export P_UNCOND=${P_UNCOND:-0.1}
export MIN_BTWN_GOALS=${MIN_BTWN_GOALS:-15}
export MAX_BTWN_GOALS=${MAX_BTWN_GOALS:-200}

exec bash "$(dirname "${BASH_SOURCE[0]}")/3_train_finetune_template.sh" "$@"
