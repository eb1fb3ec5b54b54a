#!/usr/bin/env bash
# Test your fine-tuned agent: roll out the pre-trained and the fine-tuned weights on the same prompts and the same
# worlds (same seeds), then put each pair side by side in one video. Needs the optional MineRL install (README.md;
# headless machines: prefix the call with xvfb-run -a), or REPLAY_ENV for a dry run. Run from the repo root.
# Writes SAVE_DIRPATH/pre-trained/*.mp4 + .json, SAVE_DIRPATH/fine-tuned/*.mp4 + .json, SAVE_DIRPATH/side_by_side/*.mp4.
set -euo pipefail
# The on/off rule every script shares: `switches NAME...` (1/true/yes on; 0/false/no/empty off; else refused)
source "$(dirname "${BASH_SOURCE[0]}")/toolkit_utils/switches.sh"

# What the agent should do (a text prompt), or a file of prompts ('text: ...' / 'visual: <.npy or mp4>' per line)
PROMPT=${PROMPT:-"chop a tree"}
PROMPTS_FILE=${PROMPTS_FILE:-}
# The weights to compare: the pre-trained STEVE-1 and your fine-tuned <OUT_WEIGHTS>_best.weights
BASE_WEIGHTS=${BASE_WEIGHTS:-data/weights/steve1/steve1.weights}
FINETUNED_WEIGHTS=${FINETUNED_WEIGHTS:-data/weights/steve1/my_task_best.weights}
# The architecture both weights files share
IN_MODEL=${IN_MODEL:-data/weights/vpt/2x.model}
# Text -> goal prior and MineCLIP
PRIOR_WEIGHTS=${PRIOR_WEIGHTS:-data/weights/steve1/steve1_prior.pt}
MINECLIP_WEIGHTS=${MINECLIP_WEIGHTS:-data/weights/mineclip/attn.pth}
# Classifier-free guidance scale; empty: STEVE-1's 6.0 for text prompts, 7.0 for visual prompts
COND_SCALE=${COND_SCALE:-}
# Env steps per video (20 per second) and videos (worlds) per prompt
GAMEPLAY_LENGTH=${GAMEPLAY_LENGTH:-1000}
NUM_VIDEOS=${NUM_VIDEOS:-3}
# Seed of the worlds and the agents (video i uses SEED + i for both weights)
SEED=${SEED:-0}
# On/off (1/true/yes on; 0/false/no/empty off): write the prompt on the videos
OVERLAY_PROMPT=${OVERLAY_PROMPT:-}
SAVE_DIRPATH=${SAVE_DIRPATH:-data/generated_videos/finetuned_vs_pretrained}
# A dry run without Minecraft: an episode directory or video to replay instead of MineRL (empty: MineRL)
REPLAY_ENV=${REPLAY_ENV:-}
# cpu or cuda (empty: cuda when available)
DEVICE=${DEVICE:-}
PYTHON=${PYTHON:-.venv/bin/python}

switches OVERLAY_PROMPT  # now 1 or empty; any other value was refused (exit 2)
PROMPT_ARGS=(--custom_text_prompt "$PROMPT")
if [ -n "$PROMPTS_FILE" ]; then PROMPT_ARGS=(--prompts_file "$PROMPTS_FILE"); fi

"$PYTHON" run_agent.py "${PROMPT_ARGS[@]}" --in_model "$IN_MODEL" --in_weights "$BASE_WEIGHTS" "$FINETUNED_WEIGHTS" \
  --labels pre-trained fine-tuned --prior_weights "$PRIOR_WEIGHTS" --mineclip_weights "$MINECLIP_WEIGHTS" \
  ${COND_SCALE:+--cond_scale "$COND_SCALE"} --gameplay_length "$GAMEPLAY_LENGTH" --num_videos "$NUM_VIDEOS" \
  --seed "$SEED" ${OVERLAY_PROMPT:+--overlay_prompt} --save_dirpath "$SAVE_DIRPATH" \
  ${REPLAY_ENV:+--replay_env "$REPLAY_ENV"} ${DEVICE:+--device "$DEVICE"}
