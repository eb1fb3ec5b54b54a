#!/usr/bin/env bash
# Step 3 (from scratch): train STEVE-1 from VPT's rl-from-foundation-2x weights with the paper's recipe
# (SPEC section 7). Needs a large sampling (the paper used ~100M frames) and days of GPU time.
# Running it again resumes from CHECKPOINT_DIR. Watch it: tensorboard --logdir $CHECKPOINT_DIR/logs
set -euo pipefail

SAMPLING_NAME=${SAMPLING_NAME:-neurips}
OUT_WEIGHTS=${OUT_WEIGHTS:-data/weights/steve1/trained_with_script.weights}
IN_MODEL=${IN_MODEL:-data/weights/vpt/2x.model}
# VPT weights: the STEVE-1 goal layer is not in them and starts from its initialisation (the log says so)
IN_WEIGHTS=${IN_WEIGHTS:-data/weights/vpt/rl-from-foundation-2x.weights}
LEARNING_RATE=${LEARNING_RATE:-4e-5}
TOTAL_FRAMES=${TOTAL_FRAMES:-100_000_000}
WARMUP_FRAMES=${WARMUP_FRAMES:-10_000_000}
BATCH_SIZE=${BATCH_SIZE:-12}
GRADIENT_ACCUM_STEPS=${GRADIENT_ACCUM_STEPS:-4}
T=${T:-640}
TRUNC_T=${TRUNC_T:-64}
VAL_FREQ=${VAL_FREQ:-1000}
VAL_FREQ_BEGIN=${VAL_FREQ_BEGIN:-100}
VAL_FREQ_SWITCH_STEPS=${VAL_FREQ_SWITCH_STEPS:-500}
SAVE_FREQ=${SAVE_FREQ:-1000}
SNAPSHOT_FRAMES=${SNAPSHOT_FRAMES:-50_000_000}
P_UNCOND=${P_UNCOND:-0.1}
MIN_BTWN_GOALS=${MIN_BTWN_GOALS:-15}
MAX_BTWN_GOALS=${MAX_BTWN_GOALS:-200}
WEIGHT_DECAY=${WEIGHT_DECAY:-0.039428}
MAX_GRAD_NORM=${MAX_GRAD_NORM:-5.0}
SAMPLING_DIR=${SAMPLING_DIR:-data/samplings}
LOG_DIR=${LOG_DIR:-logs/training}
CHECKPOINT_DIR=${CHECKPOINT_DIR:-data/training_checkpoint}
NUM_WORKERS=${NUM_WORKERS:-4}
NUM_PROCESSES=${NUM_PROCESSES:-1}
SEED=${SEED:-42}
MIXED_PRECISION=${MIXED_PRECISION:-bf16}
# 1: torch.compile the policy (1.8x the frames/s of eager on an H100, ~2 min to compile); empty: eager
COMPILE=${COMPILE-1}
ACCELERATE=${ACCELERATE:-.venv/bin/accelerate}

"$ACCELERATE" launch --num_processes "$NUM_PROCESSES" --mixed_precision "$MIXED_PRECISION" training/train.py \
  --in_model "$IN_MODEL" --in_weights "$IN_WEIGHTS" --out_weights "$OUT_WEIGHTS" \
  --sampling "$SAMPLING_NAME" --sampling_dir "$SAMPLING_DIR" --log_dir "$LOG_DIR" --checkpoint_dir "$CHECKPOINT_DIR" \
  --learning_rate "$LEARNING_RATE" --n_frames "$TOTAL_FRAMES" --warmup_frames "$WARMUP_FRAMES" \
  --batch_size "$BATCH_SIZE" --gradient_accumulation_steps "$GRADIENT_ACCUM_STEPS" --T "$T" --trunc_t "$TRUNC_T" \
  --val_freq "$VAL_FREQ" --val_freq_begin "$VAL_FREQ_BEGIN" --val_freq_switch_steps "$VAL_FREQ_SWITCH_STEPS" \
  --save_freq "$SAVE_FREQ" --snapshot_every_n_frames "$SNAPSHOT_FRAMES" \
  --p_uncond "$P_UNCOND" --min_btwn_goals "$MIN_BTWN_GOALS" --max_btwn_goals "$MAX_BTWN_GOALS" \
  --weight_decay "$WEIGHT_DECAY" --max_grad_norm "$MAX_GRAD_NORM" \
  --num_workers "$NUM_WORKERS" --seed "$SEED" ${COMPILE:+--compile} "$@"
