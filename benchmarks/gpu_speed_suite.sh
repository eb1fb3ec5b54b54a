#!/usr/bin/env bash
# The training/acting speed benchmarks in one go on a GPU machine (BENCHMARKS.md's tables come from here).
# Each benchmark prints JSON lines; they are collected into $RESULTS and shown at the end; logs go to $LOG_DIR.
#   bash benchmarks/gpu_speed_suite.sh
set -uo pipefail
cd "$(dirname "$0")"

# Where logs and the collected JSON lines go
LOG_DIR=${LOG_DIR:-/tmp/steve1_speed_suite}
# Micro-step variants (bench_train_throughput.py --variants); the first is checked against fp32 and profiled
VARIANTS=${VARIANTS:-regional,regional_lowmem,eager}
# Optimizer steps of the real loop's cold launch
LOOP_STEPS=${LOOP_STEPS:-60}
# Extra arguments of the real loop's train.py (e.g. --low_memory)
LOOP_EXTRA=${LOOP_EXTRA:-}

mkdir -p "$LOG_DIR"
RESULTS="$LOG_DIR/results.jsonl"
: >"$RESULTS"
run() {  # name, timeout seconds, command...
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" 2>&1 | tee "$LOG_DIR/$name.log" | grep --line-buffered '^{' | tee -a "$RESULTS"
}
run micro_step 420 python3 bench_train_throughput.py --variants "$VARIANTS" --check --profile "$LOG_DIR/profile.txt"
run agent_step 120 python3 bench_agent_step.py --steps 200
run train_loop 480 python3 bench_train_loop.py --max_steps "$LOOP_STEPS" --work_dir "$LOG_DIR/loop" --extra="$LOOP_EXTRA"
echo "== results"
cat "$RESULTS"
