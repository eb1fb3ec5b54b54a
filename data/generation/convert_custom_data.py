"""Convert your own recordings into training episodes.

    python data/generation/convert_custom_data.py --input_dir my_recordings --output_dir data/dataset_custom \
        --mineclip_weights data/weights/mineclip/attn.pth

Input layout: <input_dir>/episode_xxx/video.mp4 (any resolution and frame rate) and actions.jsonl with one
line per video frame, either in the VPT contractor format (mouse/keyboard/hotbar...) or one MineRL env
action per line ({"forward": 1, "camera": [pitch, yaw], ...}). Videos are resampled to 20 fps (constant
frame rate assumed): the frames shown at each 1/20 s are kept; when several source frames fall into one
output frame their actions are merged (buttons pressed in any of them, camera moves added up).
Recordings without actions.jsonl cannot be converted yet (labelling actions from video is a later
feature): the run stops and says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.EpisodeStorage import FPS
from data.generation.contractor_actions import ActionFileError, ContractorActions, load_actions_file
from data.generation.episode_conversion import (
    ConversionError,
    ConversionOptions,
    add_conversion_arguments,
    options_from_args,
    convert_recording,
    load_goal_encoder,
    resample_indices,
)
from data.video_io import VideoReader

VIDEO_FILE, ACTIONS_FILE = "video.mp4", "actions.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_dir", required=True, help="directory of episode_xxx/ folders with video.mp4 (+ actions.jsonl)")
    p.add_argument("--output_dir", default="data/dataset_custom", help="where episode directories go")
    add_conversion_arguments(p, min_timesteps=100)
    return p.parse_args(argv)


def merge_actions(actions: ContractorActions, indices: np.ndarray, num_source: int) -> ContractorActions:
    """Actions per source frame -> per output frame: output k gets source frames [indices[k], indices[k+1])."""
    bounds = np.append(indices, num_source)
    buttons = np.stack([actions.env_buttons[a:b].max(axis=0) if b > a else np.zeros_like(actions.env_buttons[0]) for a, b in zip(bounds[:-1], bounds[1:])])
    camera = np.stack([actions.env_camera[a:b].sum(axis=0) for a, b in zip(bounds[:-1], bounds[1:])]).astype(np.float32)
    env_null = np.array([actions.env_null[a:b].all() if b > a else True for a, b in zip(bounds[:-1], bounds[1:])])
    return ContractorActions(buttons, camera, env_null, actions.gui_open[indices], actions.cursor_xy[indices])


def convert_one(episode_dir: Path, output_dir: Path, goal_encoder, options: ConversionOptions, device: str,
                mineclip_info: dict, truncate_camera: bool) -> tuple[Path | None, str]:
    video = episode_dir / VIDEO_FILE
    if not video.is_file():
        raise ConversionError(f"{episode_dir}: no {VIDEO_FILE}")
    actions = load_actions_file(episode_dir / ACTIONS_FILE, truncate_camera=truncate_camera)
    reader = VideoReader(video)
    fps, n_video = reader.fps, reader.num_frames
    reader.close()
    frame_indices = None
    if abs(fps - FPS) > 1e-3:
        n = min(n_video, len(actions))
        if abs(n_video - len(actions)) > options.max_length_mismatch:
            raise ConversionError(f"{video}: {n_video} video frames but {len(actions)} action lines")
        frame_indices = resample_indices(n, fps, FPS)
        actions = merge_actions(actions, frame_indices, n)
    source = {"kind": "custom", "video": str(video), "source_fps": fps, "resampled_to_fps": FPS,
              "source_frames": n_video, "mineclip": mineclip_info}
    return convert_recording(video, actions, output_dir / episode_dir.name, goal_encoder, options, source, device,
                             frame_indices=frame_indices)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    input_dir, output_dir = Path(args.input_dir), Path(args.output_dir)
    if not input_dir.is_dir():
        raise SystemExit(f"convert_custom_data: --input_dir {input_dir} does not exist")
    episodes = sorted(p for p in input_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = [p.name for p in episodes if (p / VIDEO_FILE).is_file() and not (p / ACTIONS_FILE).is_file()]
    if missing:
        raise SystemExit(
            f"convert_custom_data: {len(missing)} recording(s) have {VIDEO_FILE} but no {ACTIONS_FILE} "
            f"({', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}). Training needs the action of every "
            "frame; labelling actions from video (an inverse dynamics model) is not available yet. Record actions, "
            "or leave these recordings out."
        )
    todo = [p for p in episodes if not (output_dir / p.name).is_dir()]
    print(f"{input_dir}: {len(episodes)} recordings, {len(episodes) - len(todo)} already converted, {len(todo)} to convert")
    if not todo:
        return 0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    goal_encoder, mineclip_info = load_goal_encoder(args.mineclip_weights, args.demo_random_mineclip, device)
    options = options_from_args(args)
    failures = 0
    for episode_dir in tqdm(todo, desc="recordings", unit="rec"):
        try:
            episode, message = convert_one(episode_dir, output_dir, goal_encoder, options, device, mineclip_info,
                                           args.truncate_camera)
        except (ActionFileError, ConversionError, OSError, ValueError) as e:
            failures += 1
            tqdm.write(f"FAIL {episode_dir.name}: {str(e).splitlines()[0]}")
            continue
        tqdm.write(f"{'OK  ' if episode else 'SKIP'} {episode or episode_dir.name}: {message}")
    print(f"Done: {len(todo) - failures} processed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
