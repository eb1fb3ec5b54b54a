#!/usr/bin/env bash
# Step 3: fine-tune STEVE-1 on your sampling. Copy this file (cp 3_train_finetune_template.sh 3_train_my_task.sh),
# edit the variables, run it from the repo root. Each OUT_WEIGHTS is its own run in its own CHECKPOINT_DIR:
# running the same script again resumes it (or says it is finished); other settings for the same folder are
# refused with the two ways out (--fresh, or another CHECKPOINT_DIR). Extra arguments go to train.py, e.g.
# bash 3_train_my_task.sh --fresh. Watch it: .venv/bin/tensorboard --logdir <CHECKPOINT_DIR>/logs
# Frequencies (LOG_FREQ, VAL_FREQ*, SAVE_FREQ) count optimizer steps: one optimizer step is
# TRUNC_T x BATCH_SIZE x NUM_PROCESSES x GRADIENT_ACCUM_STEPS frames (64 x 8 x 1 x 2 = 1,024 with these values).
set -euo pipefail
# The on/off rule every script shares: `switches NAME...` (1/true/yes on; 0/false/no/empty off; else refused)
source "$(dirname "${BASH_SOURCE[0]}")/toolkit_utils/switches.sh"

# Sampling from step 2 (data/samplings/${SAMPLING_NAME}_train.txt and _val.txt)
SAMPLING_NAME=${SAMPLING_NAME:-finetune}
# Exported weights: <OUT_WEIGHTS>_latest.weights, _best.weights (+ _best.json), _snapshot_<N>M.weights, and _owner.json
# naming the CHECKPOINT_DIR whose run writes them (a run with another CHECKPOINT_DIR is refused: one OUT_WEIGHTS per run)
OUT_WEIGHTS=${OUT_WEIGHTS:-data/weights/steve1/my_task.weights}
# Architecture (.model file) and the weights to start from
IN_MODEL=${IN_MODEL:-data/weights/vpt/2x.model}
IN_WEIGHTS=${IN_WEIGHTS:-data/weights/steve1/steve1.weights}
# Peak learning rate (after warmup), then cosine to 0 at 1.1 x TOTAL_FRAMES
LEARNING_RATE=${LEARNING_RATE:-1e-5}
# Frames to train on (the run stops at the optimizer step that reaches them), and frames of linear warmup (<= TOTAL_FRAMES)
TOTAL_FRAMES=${TOTAL_FRAMES:-10_000_000}
WARMUP_FRAMES=${WARMUP_FRAMES:-1_000_000}
# Samples per GPU per forward; windows accumulated per optimizer step
BATCH_SIZE=${BATCH_SIZE:-8}
GRADIENT_ACCUM_STEPS=${GRADIENT_ACCUM_STEPS:-2}
# Frames per sample, and the truncated-BPTT window (T must be a multiple of TRUNC_T)
T=${T:-320}
TRUNC_T=${TRUNC_T:-64}
# Print "Metrics for step N" and write TensorBoard every LOG_FREQ optimizer steps
LOG_FREQ=${LOG_FREQ:-10}
# Validate every VAL_FREQ optimizer steps (every VAL_FREQ_BEGIN before step VAL_FREQ_SWITCH_STEPS), on every
# VAL_EVERY_NTH validation sample: 100 steps x 1,024 frames = one validation per 102,400 frames here
VAL_FREQ=${VAL_FREQ:-100}
VAL_FREQ_BEGIN=${VAL_FREQ_BEGIN:-20}
VAL_FREQ_SWITCH_STEPS=${VAL_FREQ_SWITCH_STEPS:-100}
VAL_EVERY_NTH=${VAL_EVERY_NTH:-1}
# Resumable checkpoint + _latest.weights every SAVE_FREQ optimizer steps (102,400 frames here);
# a snapshot every SNAPSHOT_FRAMES frames
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
# On/off (1/true/yes on; 0/false/no/empty off): colour-jitter / grayscale augmentation of training frames
AUGMENT=${AUGMENT:-}
# Where step 2 wrote the sampling lists
SAMPLING_DIR=${SAMPLING_DIR:-data/samplings}
# The text log goes to LOG_DIR/train_YYYYMMDD.log
LOG_DIR=${LOG_DIR:-logs/training}
# This run's folder (checkpoints, TensorBoard logs, lock); empty: data/finetuning_checkpoint/<OUT_WEIGHTS name>
CHECKPOINT_DIR=${CHECKPOINT_DIR:-}
# DataLoader workers per GPU (capped at the CPU cores, the log says so), GPUs on this machine (more processes than GPUs
# are refused), training seed (data order, goals, initialisation)
NUM_WORKERS=${NUM_WORKERS:-4}
NUM_PROCESSES=${NUM_PROCESSES:-1}
SEED=${SEED:-42}
# bf16 or no (fp32); auto: bf16 on a GPU, fp32 on a CPU
MIXED_PRECISION=${MIXED_PRECISION:-auto}
# torch.compile each CNN stack and transformer block: yes, no; auto: yes on a GPU (1.9x the frames/s of eager on an
# H200; the first launch compiles for ~1 min, later launches start from the compile cache in ~20 s); yes without a GPU
# is refused
COMPILE=${COMPILE:-auto}
# On/off (1/true/yes on; 0/false/no/empty off): memory mode, for smaller GPUs: recompute the first CNN stack during
# backward (batch 12 x 64 frames in 13.3 GiB instead of 23.4 GiB on an H200, at 74% of the speed)
LOW_MEMORY=${LOW_MEMORY:-}
# The toolkit's Python and accelerate launcher
PYTHON=${PYTHON:-.venv/bin/python}
ACCELERATE=${ACCELERATE:-.venv/bin/accelerate}

switches AUGMENT LOW_MEMORY  # now 1 or empty; any other value was refused (exit 2)
TRAIN_ARGS=(
  --in_model "$IN_MODEL" --in_weights "$IN_WEIGHTS" --out_weights "$OUT_WEIGHTS"
  --sampling "$SAMPLING_NAME" --sampling_dir "$SAMPLING_DIR" --log_dir "$LOG_DIR" ${CHECKPOINT_DIR:+--checkpoint_dir "$CHECKPOINT_DIR"}
  --learning_rate "$LEARNING_RATE" --n_frames "$TOTAL_FRAMES" --warmup_frames "$WARMUP_FRAMES"
  --batch_size "$BATCH_SIZE" --gradient_accumulation_steps "$GRADIENT_ACCUM_STEPS" --T "$T" --trunc_t "$TRUNC_T"
  --log_freq "$LOG_FREQ" --val_freq "$VAL_FREQ" --val_freq_begin "$VAL_FREQ_BEGIN"
  --val_freq_switch_steps "$VAL_FREQ_SWITCH_STEPS" --val_every_nth "$VAL_EVERY_NTH"
  --save_freq "$SAVE_FREQ" --snapshot_every_n_frames "$SNAPSHOT_FRAMES"
  --p_uncond "$P_UNCOND" --min_btwn_goals "$MIN_BTWN_GOALS" --max_btwn_goals "$MAX_BTWN_GOALS"
  --weight_decay "$WEIGHT_DECAY" --max_grad_norm "$MAX_GRAD_NORM" --freeze "$FREEZE" ${AUGMENT:+--augment}
  --num_workers "$NUM_WORKERS" --seed "$SEED" --mixed_precision "$MIXED_PRECISION" --compile "$COMPILE"
  ${LOW_MEMORY:+--low_memory}
)

# Check every setting, the files and the checkpoint folder first (a few seconds): a mistake ends here with one
# line and exit status 2, before accelerate starts its processes.
env WORLD_SIZE="$NUM_PROCESSES" "$PYTHON" training/train.py --check_only "${TRAIN_ARGS[@]}" "$@"
# train.py chooses the precision itself (--mixed_precision above); accelerate's own values are passed so it
# does not warn about defaults. --quiet: a failed run shows train.py's own message, not a launcher traceback.
"$ACCELERATE" launch --quiet --num_processes "$NUM_PROCESSES" --num_machines 1 --mixed_precision no --dynamo_backend no \
  $( (( NUM_PROCESSES > 1 )) && echo --multi_gpu ) training/train.py "${TRAIN_ARGS[@]}" "$@"
