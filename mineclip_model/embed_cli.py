r"""Embed a text prompt or a video clip with MineCLIP and save the 512-d goal embedding as .npy.

    .venv/bin/python -m mineclip_model.embed_cli --text "chop a tree" --output prompts/chop_tree_text.npy
    .venv/bin/python -m mineclip_model.embed_cli --text "chop a tree" --prior_weights data/weights/steve1/steve1_prior.pt \
        --output prompts/chop_tree_goal.npy          # through the prior: a goal the agent can follow
    .venv/bin/python -m mineclip_model.embed_cli --video clip.mp4 --start_frame 120 --output prompts/clip_goal.npy

A video prompt is the MineCLIP embedding of 16 consecutive frames (what STEVE-1 calls a visual prompt);
run_agent.py --visual_prompt takes the saved file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mineclip_model.embedding import WINDOW, embed_clip, embed_text, resize_frames_for_mineclip
from mineclip_model.mineclip import load_mineclip
from toolkit_utils import cli

PROGRAM = "embed_cli"
WEIGHTS_FIX = "download it with bash download_weights.sh, or give the right path"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="a text prompt")
    source.add_argument("--video", help="a video file (any size; 16 frames from --start_frame are used)")
    p.add_argument("--start_frame", type=cli.int_range(0), default=0, help="first of the 16 video frames")
    p.add_argument("--mineclip_weights", default="data/weights/mineclip/attn.pth", help="MineCLIP attn.pth")
    p.add_argument("--prior_weights", default=None, help="text only: pass the text embedding through this prior (steve1_prior.pt)")
    p.add_argument("--deterministic_prior", action="store_true", help="use z = 0 in the prior instead of sampling")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior's sample")
    p.add_argument("--output", required=True, help="where the .npy (float32, shape (512,)) goes")
    p.add_argument("--device", default=None, help="cuda or cpu")
    return p.parse_args(argv)


def read_clip(path: str, start: int) -> np.ndarray:
    """16 RGB frames [16, 160, 256, 3] uint8 from frame `start`, resized to MineCLIP's input.

    Raises SettingError (a one-line refusal) when the video is unreadable or too short.
    """
    from data.video_io import VideoReader

    try:
        with VideoReader(path) as reader:
            if start + WINDOW > reader.num_frames:
                cli.refuse("--start_frame", start, f"{path} has {reader.num_frames} frames; frames {start}..{start + WINDOW - 1} "
                           "do not all exist", f"give a --start_frame of at most {max(reader.num_frames - WINDOW, 0)}")
            return resize_frames_for_mineclip(reader.read_range(start, start + WINDOW))
    except (OSError, ValueError, RuntimeError) as error:
        cli.refuse("--video", path, f"cannot be read as a video ({error})", "give an mp4 file")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.existing_file("--mineclip_weights", args.mineclip_weights, WEIGHTS_FIX)
    if args.prior_weights:
        cli.existing_file("--prior_weights", args.prior_weights, WEIGHTS_FIX)
    if args.video is not None:
        cli.existing_file("--video", args.video)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = load_mineclip(args.mineclip_weights, device=device)
    except (ValueError, KeyError, OSError, RuntimeError) as error:
        cli.refuse("--mineclip_weights", args.mineclip_weights, f"is not MineCLIP attn.pth weights ({error})", WEIGHTS_FIX)
    if args.text is not None:
        embedding = embed_text(model, [args.text], device=device)[0]
        if args.prior_weights:
            from prior_model.prior import load_prior

            try:
                prior = load_prior(args.prior_weights, device=device)
            except (ValueError, KeyError, OSError, RuntimeError) as error:
                cli.refuse("--prior_weights", args.prior_weights, f"is not STEVE-1 prior weights ({error})", WEIGHTS_FIX)
            generator = torch.Generator(device=device).manual_seed(args.seed)
            with torch.no_grad():
                goal = prior.sample(torch.from_numpy(embedding)[None].to(device), args.deterministic_prior, generator)
            embedding = goal[0].float().cpu().numpy()
    else:
        embedding = embed_clip(model, read_clip(args.video, args.start_frame), device=device)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.save(output, embedding.astype(np.float32))
    print(f"Saved {output}: shape {embedding.shape}, norm {np.linalg.norm(embedding):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(PROGRAM, main))
