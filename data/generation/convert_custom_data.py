"""Convert your own recordings into training episodes.

    python data/generation/convert_custom_data.py --input_dir my_recordings --output_dir data/dataset_custom \
        --mineclip_weights data/weights/mineclip/attn.pth

Input layout: <input_dir>/episode_xxx/video.mp4 (any resolution and frame rate) and actions.jsonl with one
line per video frame, either in the VPT contractor format (mouse/keyboard/hotbar...) or one MineRL env
action per line ({"forward": 1, "camera": [pitch, yaw], ...}). Videos are resampled to 20 fps (constant
frame rate assumed): the frames shown at each 1/20 s are kept; when several source frames fall into one
output frame their actions are merged (buttons pressed in any of them, camera moves added up).
Recordings without actions.jsonl are labelled by VPT's inverse dynamics model when --idm_model and
--idm_weights are given (data/generation/idm_labelling.py: 20 fps frames, chunks of 128, argmax actions
and their confidence); their episodes say `"actions": "idm"` in metadata.json's `source`, with the IDM
files' sha256. Without those options the run stops and names the recordings.
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
from data.generation import idm_labelling
from data.video_io import VideoReader
from toolkit_utils import cli

VIDEO_FILE, ACTIONS_FILE = "video.mp4", "actions.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_dir", required=True, help="directory of episode_xxx/ folders with video.mp4 (+ actions.jsonl)")
    p.add_argument("--output_dir", default="data/dataset_custom", help="where episode directories go")
    add_conversion_arguments(p, min_timesteps=100)
    p.add_argument("--idm_model", default=None, help="VPT's 4x_idm.model: label recordings without actions.jsonl (with --idm_weights)")
    p.add_argument("--idm_weights", default=None, help="VPT's 4x_idm.weights, loaded strictly (with --idm_model)")
    p.add_argument("--idm_batch_size", type=cli.int_range(1), default=4, help="recordings labelled together per IDM forward (GPU: 4-16)")
    p.add_argument("--idm_dtype", choices=sorted(idm_labelling.DTYPES), default="fp32",
                   help="IDM precision: fp32 computes what VPT's code computes; bf16 is faster on GPUs (labels can differ where two classes are close)")
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
              "source_frames": n_video, "mineclip": mineclip_info, "actions": "recorded"}
    return convert_recording(video, actions, output_dir / episode_dir.name, goal_encoder, options, source, device,
                             frame_indices=frame_indices)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    input_dir, output_dir = Path(args.input_dir), Path(args.output_dir)
    if not input_dir.is_dir():
        raise SystemExit(f"convert_custom_data: --input_dir {input_dir} does not exist")
    episodes = sorted(p for p in input_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = [p.name for p in episodes if (p / VIDEO_FILE).is_file() and not (p / ACTIONS_FILE).is_file()]
    if missing and not (args.idm_model or args.idm_weights):
        raise SystemExit(
            f"convert_custom_data: {len(missing)} recording(s) have {VIDEO_FILE} but no {ACTIONS_FILE} "
            f"({', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}). Training needs the action of every "
            "frame: pass --idm_model and --idm_weights (VPT's 4x_idm.model and 4x_idm.weights, from "
            "ONLY=idm bash download_weights.sh) for labelling actions from video with VPT's inverse dynamics "
            "model, record actions, or leave these recordings out."
        )
    todo = [p for p in episodes if not (output_dir / p.name).is_dir()]
    unlabelled = [p for p in todo if p.name in missing]
    todo = [p for p in todo if p.name not in missing]
    print(f"{input_dir}: {len(episodes)} recordings, {len(episodes) - len(todo) - len(unlabelled)} already converted, "
          f"{len(todo) + len(unlabelled)} to convert ({len(unlabelled)} labelled by the IDM)")
    if not todo and not unlabelled:
        return 0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    labeller = None
    if unlabelled:  # checked before any work: a bad IDM file is one line and nothing is written
        if not (args.idm_model and args.idm_weights):
            cli.exit_with_refusal("convert_custom_data", f"{'--idm_weights' if args.idm_model else '--idm_model'}: "
                                  "missing; --idm_model and --idm_weights go together")
        try:
            labeller = idm_labelling.load_labeller(args.idm_model, args.idm_weights, device, args.idm_dtype, args.idm_batch_size)
        except cli.SettingError as e:
            cli.exit_with_refusal("convert_custom_data", str(e))
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
    if labeller is not None:
        idm_info = idm_labelling.idm_metadata(args.idm_model, args.idm_weights, labeller)
        for outcome in tqdm(idm_labelling.label_and_convert(unlabelled, output_dir, VIDEO_FILE, labeller, idm_info, goal_encoder,
                                                            options, device, mineclip_info),
                            total=len(unlabelled), desc="IDM-labelled recordings", unit="rec"):
            failures += outcome.failed
            status = "FAIL" if outcome.failed else "OK  " if outcome.episode else "SKIP"
            tqdm.write(f"{status} {outcome.episode or outcome.recording.name}: {outcome.message}")
    print(f"Done: {len(todo) + len(unlabelled) - failures} processed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
