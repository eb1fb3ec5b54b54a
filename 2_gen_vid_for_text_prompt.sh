#!/usr/bin/env bash
# Watch the agent: roll it out in MineRL for a text prompt and write mp4s (needs the optional MineRL install,
# see README.md; headless machines: prefix the call with xvfb-run -a). Run from the repo root.
set -euo pipefail

# What the agent should do
PROMPT=${PROMPT:-"chop a tree"}
# Agent weights: steve1.weights, or your fine-tuned <OUT_WEIGHTS>_best.weights
IN_WEIGHTS=${IN_WEIGHTS:-data/weights/steve1/steve1.weights}
IN_MODEL=${IN_MODEL:-data/weights/vpt/2x.model}
# Text -> goal prior and MineCLIP
PRIOR_WEIGHTS=${PRIOR_WEIGHTS:-data/weights/steve1/steve1_prior.pt}
MINECLIP_WEIGHTS=${MINECLIP_WEIGHTS:-data/weights/mineclip/attn.pth}
# Classifier-free guidance scale (STEVE-1: 6 for text prompts)
COND_SCALE=${COND_SCALE:-6.0}
# Env steps per video (20 per second) and videos per prompt
GAMEPLAY_LENGTH=${GAMEPLAY_LENGTH:-1000}
NUM_VIDEOS=${NUM_VIDEOS:-1}
SAVE_DIRPATH=${SAVE_DIRPATH:-data/generated_videos/custom_text_prompt}
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" run_agent.py --custom_text_prompt "$PROMPT" --in_model "$IN_MODEL" --in_weights "$IN_WEIGHTS" \
  --prior_weights "$PRIOR_WEIGHTS" --mineclip_weights "$MINECLIP_WEIGHTS" --cond_scale "$COND_SCALE" \
  --gameplay_length "$GAMEPLAY_LENGTH" --num_videos "$NUM_VIDEOS" --save_dirpath "$SAVE_DIRPATH"
