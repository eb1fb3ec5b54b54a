"""Read throughput of the training loader's hot path: random 640-frame windows of one episode video.

Writes one 6,000-frame 128x128 video twice, in our format (h264 through data.video_io.VideoWriter)
and in the original STEVE-1 format (mp4v through cv2.VideoWriter), then times random windows:
  ours          VideoReader(path).read_range(s, s + T), a fresh reader per window as a loader does
  legacy-cv2    the original way: cv2.VideoCapture, CAP_PROP_POS_FRAMES seek, read + BGR->RGB
  legacy-pyav   the mp4v file through our VideoReader
Frames are generated (a blocky textured world scrolling under the camera) unless --frames_from
names a video to take them from (resized to 128x128 with INTER_LINEAR and looped).

  .venv/bin/python benchmarks/bench_video_io.py
  .venv/bin/python benchmarks/bench_video_io.py --frames_from clip.mp4 --threads 1 2 0
Reference (the original STEVE-1 code): the original loader gave ~3,400 frames/s per worker, everything
included (unpickling, seeking, per-frame action conversion), for 6,000-frame episodes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from data.video_io import DEFAULT_CRF, DEFAULT_GOP, READ_RANGE_THREADS, VideoReader, VideoWriter, read_video_frames
from toolkit_utils import cli

FRAME_SIZE = 128
FPS = 20
BLOCK_PX = 6  # world block size on screen at 128x128 (a 16 px Minecraft block seen from a few metres)


def parse_args() -> argparse.Namespace:
    """Command-line settings."""
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--num_frames", type=int, default=6000, help="frames in the episode video")
    parser.add_argument("--window", type=int, default=640, help="frames per read (T of the training recipe)")
    parser.add_argument("--repeats", type=int, default=30, help="random windows timed per reader; medians reported")
    parser.add_argument("--threads", type=int, nargs="+", default=[READ_RANGE_THREADS],
                        help="decoder thread counts to time for our reader (0: one per core)")
    parser.add_argument("--crf", type=int, default=DEFAULT_CRF, help="x264 CRF of our file")
    parser.add_argument("--gop", type=int, default=DEFAULT_GOP, help="keyframe interval of our file")
    parser.add_argument("--frames_from", default=None, help="take frames from this video instead of generating them")
    parser.add_argument("--seed", type=int, default=0, help="seed for the frames and the window starts")
    parser.add_argument("--json_out", default=None, help="append the JSON result line to this file")
    return parser.parse_args()


def generated_frames(n: int, seed: int) -> np.ndarray:
    """A textured block world (hue per block, brightness noise per pixel) panned smoothly."""
    rng = np.random.default_rng(seed)
    blocks = 96
    hue = np.repeat(np.repeat(rng.integers(0, 180, (blocks, blocks)), BLOCK_PX, 0), BLOCK_PX, 1)
    saturation = np.repeat(np.repeat(rng.integers(40, 160, (blocks, blocks)), BLOCK_PX, 0), BLOCK_PX, 1)
    value = np.clip(rng.normal(140, 25, hue.shape), 20, 255)
    world = cv2.cvtColor(np.stack([hue, saturation, value], -1).astype(np.uint8), cv2.COLOR_HSV2RGB)
    span = world.shape[0] - FRAME_SIZE
    frames = np.empty((n, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    for t in range(n):
        x = int((span / 2) * (1 + np.sin(t / 97)))
        y = int((span / 2) * (1 + np.cos(t / 131)))
        frames[t] = world[y:y + FRAME_SIZE, x:x + FRAME_SIZE]
    return frames


def frames_from_video(path: str, n: int) -> np.ndarray:
    """Frames of a video resized to 128x128 and looped (forwards, backwards) to n frames."""
    clip = np.stack([
        cv2.resize(frame, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_LINEAR)
        for frame in read_video_frames(path)
    ])
    loop = np.concatenate([clip, clip[::-1]])
    return loop[np.arange(n) % len(loop)]


def legacy_cv2_read(path: Path, start: int, stop: int) -> np.ndarray:
    """The original loader's read: OpenCV seek by frame number, then read and convert to RGB."""
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    for _ in range(start, stop):
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


def pyav_read(path: Path, start: int, stop: int, threads: int) -> np.ndarray:
    """Our read: a fresh VideoReader, one read_range."""
    with VideoReader(path, threads=threads) as reader:
        return reader.read_range(start, stop)


def time_reads(read, starts: list[int], window: int) -> float:
    """Median frames/s over the windows."""
    rates = []
    for start in starts:
        begin = time.perf_counter()
        frames = read(start, start + window)
        rates.append(len(frames) / (time.perf_counter() - begin))
        assert len(frames) == window
    return statistics.median(rates)


def main() -> None:
    """Write both files, time random windows, print the medians."""
    args = parse_args()
    if args.frames_from:
        frames = frames_from_video(args.frames_from, args.num_frames)
    else:
        frames = generated_frames(args.num_frames, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ours, legacy = Path(tmp) / "frames.mp4", Path(tmp) / "legacy_frames.mp4"
        begin = time.perf_counter()
        with VideoWriter(ours, crf=args.crf, gop=args.gop) as writer:
            for frame in frames:
                writer.write(frame)
        encode_fps = len(frames) / (time.perf_counter() - begin)
        video = cv2.VideoWriter(str(legacy), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (FRAME_SIZE, FRAME_SIZE))
        for frame in frames:
            video.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        video.release()

        rng = np.random.default_rng(args.seed)
        starts = rng.integers(0, args.num_frames - args.window + 1, args.repeats).tolist()
        # Check before timing: cv2's frame-number seek and ours must land on the same frame.
        probe = starts[0]
        ours_full = np.stack(list(read_video_frames(ours)))
        legacy_full = np.stack(list(read_video_frames(legacy)))
        ours_exact = np.array_equal(pyav_read(ours, probe, probe + args.window, READ_RANGE_THREADS), ours_full[probe:probe + args.window])
        pyav_legacy_exact = np.array_equal(
            pyav_read(legacy, probe, probe + args.window, READ_RANGE_THREADS), legacy_full[probe:probe + args.window]
        )
        cv2_window = legacy_cv2_read(legacy, probe, probe + args.window)
        cv2_offset = int(np.argmin([
            np.abs(cv2_window[0].astype(np.int16) - legacy_full[probe + d]).mean() for d in range(-3, 4)
        ])) - 3

        results = {
            "num_frames": args.num_frames,
            "crf": args.crf,
            "gop": args.gop,
            "window": args.window,
            "frames": "video " + os.path.basename(args.frames_from) if args.frames_from else "generated",
            "ours_kib_per_frame": round(ours.stat().st_size / 1024 / len(frames), 2),
            "legacy_kib_per_frame": round(legacy.stat().st_size / 1024 / len(frames), 2),
            "ours_mae": round(float(np.abs(ours_full.astype(np.int16) - frames).mean()), 3),
            "legacy_mae_via_cv2": None,
            "ours_encode_fps": round(encode_fps),
            "ours_read_range_exact": ours_exact,
            "legacy_pyav_read_range_exact": pyav_legacy_exact,
            "legacy_cv2_seek_offset_frames": cv2_offset,
        }
        cv2_full = legacy_cv2_read(legacy, 0, len(frames))
        results["legacy_mae_via_cv2"] = round(float(np.abs(cv2_full.astype(np.int16) - frames).mean()), 3)
        for threads in args.threads:
            results[f"ours_threads{threads}_fps"] = round(
                time_reads(lambda a, b: pyav_read(ours, a, b, threads), starts, args.window)
            )
        results["legacy_cv2_fps"] = round(time_reads(lambda a, b: legacy_cv2_read(legacy, a, b), starts, args.window))
        results["legacy_pyav_fps"] = round(
            time_reads(lambda a, b: pyav_read(legacy, a, b, READ_RANGE_THREADS), starts, args.window)
        )

    print(f"{args.num_frames}-frame 128x128 episode ({results['frames']}), {args.repeats} random {args.window}-frame windows")
    print(f"  ours (h264, CRF {args.crf}, GOP {args.gop}): {results['ours_kib_per_frame']} KiB/frame, MAE {results['ours_mae']}, "
          f"encoded at {results['ours_encode_fps']} frames/s")
    print(f"  legacy (mp4v, OpenCV):        {results['legacy_kib_per_frame']} KiB/frame, MAE {results['legacy_mae_via_cv2']}")
    for threads in args.threads:
        print(f"  read_range, ours, {threads} decoder thread(s): {results[f'ours_threads{threads}_fps']:>7} frames/s (median)")
    print(f"  legacy mp4v, cv2 seek + read (original):  {results['legacy_cv2_fps']:>7} frames/s (median)")
    print(f"  legacy mp4v through VideoReader:          {results['legacy_pyav_fps']:>7} frames/s (median)")
    print(f"  exact seeks: ours {ours_exact}, legacy via VideoReader {pyav_legacy_exact}; "
          f"cv2 seek lands {cv2_offset:+d} frames from the target")
    line = json.dumps(results)
    print(line)
    if args.json_out:
        with open(args.json_out, "a") as file:
            file.write(line + "\n")


if __name__ == "__main__":
    main()
