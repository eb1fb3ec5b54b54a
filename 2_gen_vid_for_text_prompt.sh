#!/usr/bin/env bash
# Watch the agent: roll it out in MineRL for a prompt and write mp4s, each with a JSON record beside it (needs the
# optional MineRL install, see README.md; headless machines: prefix the call with xvfb-run -a). Run from the repo root.
# To compare your fine-tuned weights with the pre-trained ones on the same prompts and worlds: 2_test_finetuned_model.sh
set -euo pipefail
# The on/off rule every script shares: `switches NAME...` (1/true/yes on; 0/false/no/empty off; else refused)
source "$(dirname "${BASH_SOURCE[0]}")/toolkit_utils/switches.sh"

# What the agent should do (a text prompt), or a file of prompts ('text: ...' / 'visual: <.npy or mp4>' per line)
PROMPT=${PROMPT:-"chop a tree"}
PROMPTS_FILE=${PROMPTS_FILE:-}
# Agent weights: steve1.weights, or your fine-tuned <OUT_WEIGHTS>_best.weights; the .model file gives the architecture
IN_WEIGHTS=${IN_WEIGHTS:-data/weights/steve1/steve1.weights}
IN_MODEL=${IN_MODEL:-data/weights/vpt/2x.model}
# Text -> goal prior and MineCLIP
PRIOR_WEIGHTS=${PRIOR_WEIGHTS:-data/weights/steve1/steve1_prior.pt}
MINECLIP_WEIGHTS=${MINECLIP_WEIGHTS:-data/weights/mineclip/attn.pth}
# Classifier-free guidance scale; empty: STEVE-1's 6.0 for text prompts, 7.0 for visual prompts
COND_SCALE=${COND_SCALE:-}
# Env steps per video (20 per second) and videos per prompt
GAMEPLAY_LENGTH=${GAMEPLAY_LENGTH:-1000}
NUM_VIDEOS=${NUM_VIDEOS:-1}
# Seed of the worlds and the agent (video i uses SEED + i); empty: drawn at random and written in the records
SEED=${SEED:-}
# On/off (1/true/yes on; 0/false/no/empty off): write the prompt on the video
OVERLAY_PROMPT=${OVERLAY_PROMPT:-}
SAVE_DIRPATH=${SAVE_DIRPATH:-data/generated_videos/custom_text_prompt}
# A dry run without Minecraft: an episode directory or video to replay instead of MineRL (empty: MineRL)
REPLAY_ENV=${REPLAY_ENV:-}
# cpu or cuda (empty: cuda when available)
DEVICE=${DEVICE:-}
PYTHON=${PYTHON:-.venv/bin/python}

switches OVERLAY_PROMPT  # now 1 or empty; any other value was refused (exit 2)
PROMPT_ARGS=(--custom_text_prompt "$PROMPT")
if [ -n "$PROMPTS_FILE" ]; then PROMPT_ARGS=(--prompts_file "$PROMPTS_FILE"); fi

"$PYTHON" run_agent.py "${PROMPT_ARGS[@]}" --in_model "$IN_MODEL" --in_weights "$IN_WEIGHTS" \
  --prior_weights "$PRIOR_WEIGHTS" --mineclip_weights "$MINECLIP_WEIGHTS" ${COND_SCALE:+--cond_scale "$COND_SCALE"} \
  --gameplay_length "$GAMEPLAY_LENGTH" --num_videos "$NUM_VIDEOS" ${SEED:+--seed "$SEED"} ${OVERLAY_PROMPT:+--overlay_prompt} \
  --save_dirpath "$SAVE_DIRPATH" ${REPLAY_ENV:+--replay_env "$REPLAY_ENV"} ${DEVICE:+--device "$DEVICE"}
