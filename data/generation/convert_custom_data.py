"""Convert your own recordings into training episodes.

    python data/generation/convert_custom_data.py --input_dir my_recordings --output_dir data/dataset_custom \
        --mineclip_weights data/weights/mineclip/attn.pth

Input layout: <input_dir>/episode_xxx/video.mp4 and actions.jsonl with one line per video frame, either in the
VPT contractor format (mouse/keyboard/hotbar...) or one MineRL env action per line ({"forward": 1, "camera":
[pitch, yaw], ...}). Any resolution: frames are brought to 640x360 first (what the agent sees in MineRL), then
follow the contractor pipeline (cursor, 128x128 and 256x160 resizes). Any frame rate from 5 to 240 fps:
resampled to 20 fps with the actions of merged frames combined (data/generation/episode_conversion.py).
The labelling rules (--camera_labels, --null_filter) are the same as for contractor data. A recording that
fails prints one line and the others go on.
"""

from __future__ import annotations

import concurrent.futures
import sys
from pathlib import Path

from tqdm import tqdm

from data.generation.conversion_jobs import (
    FAIL,
    ConversionOutcome,
    ConversionPool,
    ConversionTask,
    GoalEncoderSpec,
    MineCLIPLoadError,
    Summary,
    default_device,
)
from data.generation.conversion_lock import hold_directories, remove_dead_writers
from data.generation.episode_conversion import (
    ConversionOptions,
    add_conversion_arguments,
    check_mineclip_arguments,
    options_from_args,
)
from toolkit_utils import cli

VIDEO_FILE, ACTIONS_FILE = "video.mp4", "actions.jsonl"


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog="convert_custom_data.py", description=__doc__)
    p.add_argument("--input_dir", required=True, help="directory of episode_xxx/ folders with video.mp4 + actions.jsonl")
    p.add_argument("--output_dir", default="data/dataset_custom", help="where episode directories go")
    add_conversion_arguments(p, min_timesteps=100)
    return p


def list_recordings(input_dir: Path) -> list[Path]:
    """The recording folders of `input_dir` (hidden folders left out), sorted by name."""
    return sorted(p for p in input_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def recordings_without_actions(episodes: list[Path]) -> list[Path]:
    """Recordings that have a video but no actions.jsonl.

    Training needs the action of every frame; labelling actions from the video (an inverse dynamics model)
    is not available yet, so such recordings stop the run before any work (convert_custom).
    """
    return [p for p in episodes if (p / VIDEO_FILE).is_file() and not (p / ACTIONS_FILE).is_file()]


def convert_custom(input_dir: Path, output_dir: Path, pool: ConversionPool, options: ConversionOptions) -> Summary:
    """Convert every recording of `input_dir` not yet in `output_dir` (the caller holds output_dir's lock).

    Raises MineCLIPLoadError (nothing can convert).
    """
    summary = Summary()
    episodes = list_recordings(input_dir)
    missing = recordings_without_actions(episodes)
    if missing:
        names = ", ".join(p.name for p in missing[:5]) + ("..." if len(missing) > 5 else "")
        print(f"FAIL {input_dir}: {len(missing)} recording(s) have {VIDEO_FILE} but no {ACTIONS_FILE} ({names}). "
              "Training needs the action of every frame; labelling actions from video (an inverse dynamics model) "
              "is not available yet. Record actions, or leave these recordings out.", flush=True)
        summary.failed += len(missing)
        return summary
    todo = [p for p in episodes if not (output_dir / p.name).is_dir()]
    print(f"{input_dir}: {len(episodes)} recordings, {len(episodes) - len(todo)} already converted, "
          f"{len(todo)} to convert into {output_dir}", flush=True)
    futures = {}
    for episode_dir in todo:
        video = episode_dir / VIDEO_FILE
        if not video.is_file():
            summary.count(ConversionOutcome(episode_dir.name, FAIL, f"{episode_dir}: no {VIDEO_FILE}"))
            continue
        source = {"kind": "custom", "video": str(video), "actions": str(episode_dir / ACTIONS_FILE)}
        task = ConversionTask(episode_dir.name, str(video), str(episode_dir / ACTIONS_FILE),
                              str(output_dir / episode_dir.name), source, options)
        futures[pool.submit(task)] = task
    for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="recordings", unit="rec",
                       disable=not futures):
        summary.count(pool.outcome(futures[future], future))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_mineclip_arguments(parser, args)
    input_dir, output_dir = Path(args.input_dir), Path(args.output_dir)
    if not input_dir.is_dir():
        parser.refuse("--input_dir", input_dir, "is not a directory", "give the folder holding your episode_xxx/ folders")
    spec = GoalEncoderSpec(args.mineclip_weights, args.demo_random_mineclip, args.device or default_device())
    with hold_directories({"--output_dir": output_dir}):
        remove_dead_writers(output_dir)
        with ConversionPool(args.jobs, spec) as pool:
            try:
                summary = convert_custom(input_dir, output_dir, pool, options_from_args(args))
            except MineCLIPLoadError as e:
                print(f"FAIL {e}", flush=True)
                return 1
    print(f"Done: {summary.line()}", flush=True)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(cli.run_main(build_parser().prog, main))
