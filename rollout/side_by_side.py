r"""Two or more videos in one mp4, side by side in a row, each with its label above it.

    .venv/bin/python -m rollout.side_by_side pretrained/chop_a_tree_00.mp4 finetuned/chop_a_tree_00.mp4 \
        --labels pre-trained fine-tuned --output side_by_side/chop_a_tree_00.mp4

Every input is scaled to the height of the first (aspect kept, INTER_AREA); the output runs as long as the
longest input. A shorter input holds its last frame and its label says "(ended)" from then on, so a run
that ended early (the environment ended the episode) stays visible and is marked. All inputs must have
the same frame rate; the output has it too (h264, data.video_io.VideoWriter). An existing output is kept
unless --overwrite is given, and an output that is one of the inputs is always refused.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from data.video_io import VideoError, VideoReader, VideoWriter
from rollout.captions import caption_band
from toolkit_utils import cli
from toolkit_utils.progress import progress_bar

READ_CHUNK_FRAMES = 64


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def render_side_by_side(videos: list[str | os.PathLike], labels: list[str], output: str | os.PathLike,
                        progress: bool = True) -> Path:
    """Write `output`: the videos in a row under their labels, padded to the longest by holding last frames.

    Frame layout: a black band of height ~max(24, H/12) with each label centred over its video, then the
    videos (each H high, W_i = W_i' * H / H_i' wide, even) left to right. Raises ValueError when fewer
    than two videos, a label count that differs, or different frame rates; VideoError for unreadable files.
    The output is written under a temporary name and renamed when complete.
    """
    if len(videos) < 2 or len(labels) != len(videos):
        raise ValueError(f"need two or more videos and one label each, got {len(videos)} videos, {len(labels)} labels")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.partial.mp4")
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(VideoReader(path)) for path in videos]
        rates = {round(r.fps, 3) for r in readers}
        if len(rates) > 1:
            raise ValueError(f"the videos have different frame rates ({', '.join(f'{r.path}: {r.fps:g}' for r in readers)})")
        height = _even(readers[0].height)
        widths = [_even(r.width * height / r.height) for r in readers]
        band_height = _even(max(24, height / 12))
        total = max(r.num_frames for r in readers)
        chunks: list[np.ndarray] = [np.empty((0,)) for _ in readers]
        starts = [0] * len(readers)
        last: list[np.ndarray | None] = [None] * len(readers)
        with VideoWriter(partial, fps=round(readers[0].fps)) as writer:
            for t in progress_bar(range(total), desc=output.name, unit="frame", disable=not progress):
                tiles, bands = [], []
                for i, reader in enumerate(readers):
                    ended = t >= reader.num_frames
                    if not ended:
                        if t >= starts[i] + len(chunks[i]):
                            starts[i], chunks[i] = t, reader.read_range(t, min(t + READ_CHUNK_FRAMES, reader.num_frames))
                        frame = chunks[i][t - starts[i]]
                        if frame.shape[:2] != (height, widths[i]):
                            frame = cv2.resize(frame, (widths[i], height), interpolation=cv2.INTER_AREA)
                        last[i] = frame
                    tiles.append(last[i])
                    bands.append(caption_band(widths[i], band_height, labels[i] + (" (ended)" if ended else "")))
                writer.write(np.vstack([np.hstack(bands), np.hstack(tiles)]))
    os.replace(partial, output)
    return output


def check_output(output: str | os.PathLike, videos: list[str], overwrite: bool) -> None:
    """Refuse (SettingError) an --output that is one of `videos`, a folder, or an existing file without `overwrite`.

    Why: the output replaces its path when complete, so an input named as output would be lost, and a
    comparison made earlier (perhaps from runs that no longer exist) must not vanish by a repeated command.
    """
    path = Path(output)
    for video in videos:
        same = os.path.samefile(path, video) if path.exists() else path.resolve() == Path(video).resolve()
        if same:
            cli.refuse("--output", output, f"is the input video {video}; writing it would destroy that input",
                       "choose another --output path")
    if path.is_dir():
        cli.refuse("--output", output, "is a folder", "name the mp4 file to write, e.g. --output side_by_side/x.mp4")
    if path.exists() and not overwrite:
        cli.refuse("--output", output, "already exists", "add --overwrite to replace it, or choose another --output path")


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="side_by_side", description=__doc__)
    parser.add_argument("videos", nargs="+", help="two or more videos (e.g. the same prompt and seed with different weights)")
    parser.add_argument("--labels", nargs="+", default=None, help="one label per video (default: the files' parent folder names)")
    parser.add_argument("--output", required=True, help="the mp4 to write (never one of the videos)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output when it already exists (default: refuse)")
    args = parser.parse_args(argv)
    if len(args.videos) < 2:
        parser.refuse("videos", " ".join(args.videos), "is one video", "give two or more")
    for video in args.videos:
        cli.existing_file("videos", video, "check the path")
    labels = args.labels or [Path(v).parent.name or Path(v).stem for v in args.videos]
    if len(labels) != len(args.videos):
        parser.refuse("--labels", " ".join(labels), f"gives {len(labels)} labels for {len(args.videos)} videos", "give one per video")
    check_output(args.output, args.videos, args.overwrite)
    try:
        path = render_side_by_side(args.videos, labels, args.output)
    except (VideoError, ValueError) as error:
        parser.refuse("videos", " ".join(args.videos), str(error), "give videos made by run_agent.py (same frame rate)")
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main("side_by_side", main))
