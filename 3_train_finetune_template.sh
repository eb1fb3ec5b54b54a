#!/usr/bin/env bash
# Step 3: fine-tune STEVE-1 on your sampling. Copy this file (cp 3_train_finetune_template.sh 3_train_my_task.sh),
# edit the variables, run it from the repo root. Running it again resumes from CHECKPOINT_DIR.
# Watch it: tensorboard --logdir $CHECKPOINT_DIR/logs
set -euo pipefail

# Sampling from step 2 (data/samplings/${SAMPLING_NAME}_train.txt and _val.txt)
SAMPLING_NAME=${SAMPLING_NAME:-finetune}
# Exported weights: <OUT_WEIGHTS>_latest.weights, _best.weights (+ _best.json), _snapshot_<N>M.weights
OUT_WEIGHTS=${OUT_WEIGHTS:-data/weights/steve1/my_task.weights}
# Architecture (.model file) and the weights to start from
IN_MODEL=${IN_MODEL:-data/weights/vpt/2x.model}
IN_WEIGHTS=${IN_WEIGHTS:-data/weights/steve1/steve1.weights}
# Peak learning rate (after warmup), then cosine to 0 at 1.1 x TOTAL_FRAMES
LEARNING_RATE=${LEARNING_RATE:-1e-5}
# Frames to train on, and frames of linear warmup
TOTAL_FRAMES=${TOTAL_FRAMES:-10_000_000}
WARMUP_FRAMES=${WARMUP_FRAMES:-1_000_000}
# Samples per GPU per forward; windows accumulated per optimizer step
BATCH_SIZE=${BATCH_SIZE:-8}
GRADIENT_ACCUM_STEPS=${GRADIENT_ACCUM_STEPS:-2}
# Frames per sample, and the truncated-BPTT window (T must be a multiple of TRUNC_T)
T=${T:-320}
TRUNC_T=${TRUNC_T:-64}
# Validate every VAL_FREQ optimizer steps (every VAL_FREQ_BEGIN before step VAL_FREQ_SWITCH_STEPS)
VAL_FREQ=${VAL_FREQ:-100}
VAL_FREQ_BEGIN=${VAL_FREQ_BEGIN:-20}
VAL_FREQ_SWITCH_STEPS=${VAL_FREQ_SWITCH_STEPS:-100}
# Resumable checkpoint + _latest.weights every SAVE_FREQ steps; a snapshot every SNAPSHOT_FRAMES frames
SAVE_FREQ=${SAVE_FREQ:-100}
SNAPSHOT_FRAMES=${SNAPSHOT_FRAMES:-5_000_000}
# Probability of an unconditional (zero-goal) sample, for classifier-free guidance
P_UNCOND=${P_UNCOND:-0.1}
# Hindsight goal gaps: drawn from [MIN_BTWN_GOALS, MAX_BTWN_GOALS) frames
MIN_BTWN_GOALS=${MIN_BTWN_GOALS:-15}
MAX_BTWN_GOALS=${MAX_BTWN_GOALS:-200}
# AdamW weight decay and gradient clipping
WEIGHT_DECAY=${WEIGHT_DECAY:-0.039428}
MAX_GRAD_NORM=${MAX_GRAD_NORM:-5.0}
# Parts to keep fixed, e.g. cnn,transformer (trains only the goal layer, last layer and heads); empty: train all
FREEZE=${FREEZE:-}
# Set to 1 for colour-jitter / grayscale augmentation of training frames
AUGMENT=${AUGMENT:-}
# Where step 2 wrote the sampling lists
SAMPLING_DIR=${SAMPLING_DIR:-data/samplings}
# Resumable checkpoints and TensorBoard logs; the text log goes to LOG_DIR/train_YYYYMMDD.log
LOG_DIR=${LOG_DIR:-logs/training}
CHECKPOINT_DIR=${CHECKPOINT_DIR:-data/finetuning_checkpoint}
# DataLoader workers per GPU, GPUs, seed
NUM_WORKERS=${NUM_WORKERS:-4}
NUM_PROCESSES=${NUM_PROCESSES:-1}
SEED=${SEED:-42}
# bf16 on GPUs; "no" for fp32 (and on CPUs)
MIXED_PRECISION=${MIXED_PRECISION:-bf16}
# 1: torch.compile each CNN stack and transformer block (1.9x the frames/s of eager on an H200; the first launch
# compiles for ~1 min, later launches start from the compile cache in ~20 s); empty: eager
COMPILE=${COMPILE-1}
# 1: memory mode, for smaller GPUs: recompute the first CNN stack during backward (batch 12 x 64 frames in 13.3 GiB
# instead of 23.4 GiB on an H200, at 74% of the speed); empty: off
LOW_MEMORY=${LOW_MEMORY:-}
# accelerate launcher (from the toolkit's environment)
ACCELERATE=${ACCELERATE:-.venv/bin/accelerate}

"$ACCELERATE" launch --num_processes "$NUM_PROCESSES" --mixed_precision "$MIXED_PRECISION" training/train.py \
  --in_model "$IN_MODEL" --in_weights "$IN_WEIGHTS" --out_weights "$OUT_WEIGHTS" \
  --sampling "$SAMPLING_NAME" --sampling_dir "$SAMPLING_DIR" --log_dir "$LOG_DIR" --checkpoint_dir "$CHECKPOINT_DIR" \
  --learning_rate "$LEARNING_RATE" --n_frames "$TOTAL_FRAMES" --warmup_frames "$WARMUP_FRAMES" \
  --batch_size "$BATCH_SIZE" --gradient_accumulation_steps "$GRADIENT_ACCUM_STEPS" --T "$T" --trunc_t "$TRUNC_T" \
  --val_freq "$VAL_FREQ" --val_freq_begin "$VAL_FREQ_BEGIN" --val_freq_switch_steps "$VAL_FREQ_SWITCH_STEPS" \
  --save_freq "$SAVE_FREQ" --snapshot_every_n_frames "$SNAPSHOT_FRAMES" \
  --p_uncond "$P_UNCOND" --min_btwn_goals "$MIN_BTWN_GOALS" --max_btwn_goals "$MAX_BTWN_GOALS" \
  --weight_decay "$WEIGHT_DECAY" --max_grad_norm "$MAX_GRAD_NORM" --freeze "$FREEZE" ${AUGMENT:+--augment} \
  --num_workers "$NUM_WORKERS" --seed "$SEED" ${COMPILE:+--compile} ${LOW_MEMORY:+--low_memory} "$@"
