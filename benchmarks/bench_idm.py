"""Throughput of labelling videos with VPT's inverse dynamics model (IDM), and of step 1 for recordings without actions.

Three measurements, one JSON line each (frames/s and peak GPU memory in GiB), random weights (speed does not
depend on their values):
  idm_labelling fp32 / bf16  IDMLabeller.label_streams on frames already in memory (128x128 uint8): --recordings
                             recordings of --chunks chunks of 128 frames labelled together (batch = --recordings),
                             host-to-device copies and labels back to numpy included; median of --repeats calls.
  idm_conversion             label_and_convert (what convert_custom_data.py --idm_model runs) on generated 640x360
                             20 fps recordings without actions: decode + IDM labelling (fp32, the CLI default) +
                             null filtering + 128x128 frames + MineCLIP embeddings (real-size architecture, fp16) +
                             writing the episodes; frames/s of labelled source frames, one timed run.

    .venv/bin/python benchmarks/bench_idm.py --device cuda                 # the 4x IDM (under 2 minutes on an H200)
    .venv/bin/python benchmarks/bench_idm.py --device cpu --tiny           # smoke test: tiny IDM and MineCLIP, small sizes
(from the repo root; prefix PYTHONPATH=. where the repo is not pip-installed)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from data.generation.episode_conversion import ConversionOptions
from data.generation.idm_labelling import DEFAULT_CHUNK, IDMLabeller, label_and_convert
from data.generation.synthetic_contractor import write_synthetic_recording
from mineclip_model.mineclip import MineCLIP, MineCLIPConfig
from vpt_model.inverse_dynamics import InverseActionPolicy, idm_preset
from toolkit_utils import cli


def parse_args() -> argparse.Namespace:
    """Command-line settings."""
    p = cli.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device to run on")
    p.add_argument("--tiny", action="store_true", help="tiny IDM and MineCLIP and small sizes (CPU smoke test)")
    p.add_argument("--recordings", type=int, default=None, help="recordings labelled together (default: 8; --tiny 2)")
    p.add_argument("--chunks", type=int, default=None, help="chunks of 128 frames per recording (default: 4; --tiny 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed labelling calls per dtype (default: 3; --tiny 1)")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated IDM precisions to time")
    p.add_argument("--conversion_frames", type=int, default=None, help="20 fps frames per generated recording (default: 1200; --tiny 140)")
    p.add_argument("--conversion_recordings", type=int, default=None, help="recordings converted (default: 4; --tiny 2)")
    p.add_argument("--workdir", default=None, help="where generated recordings and episodes go (default: a temp dir, removed)")
    return p.parse_args()


def _peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _line(device: torch.device, **fields) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(json.dumps({**fields, "device": name, "torch": torch.__version__}), flush=True)


def bench_labelling(idm: InverseActionPolicy, device: torch.device, dtype: str, recordings: int, chunks: int, repeats: int) -> None:
    """Median frames/s of label_streams over `recordings` in-memory recordings labelled together."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (chunks * DEFAULT_CHUNK, 128, 128, 3), dtype=np.uint8) for _ in range(recordings)]
    labeller = IDMLabeller(idm, device, dtype, DEFAULT_CHUNK, batch_size=recordings)

    def run() -> float:
        start = time.perf_counter()
        results = list(labeller.label_streams((i, iter(f)) for i, f in enumerate(frames)))
        elapsed = time.perf_counter() - start  # labels are numpy: the device is synchronised
        assert all(not isinstance(r, Exception) for _, r in results)
        return elapsed

    run()  # warm-up: cuDNN algorithm choice, allocator
    _reset_peak(device)
    times = [run() for _ in range(repeats)]
    total = recordings * chunks * DEFAULT_CHUNK
    _line(device, benchmark="idm_labelling", dtype=dtype, recordings=recordings, frames_per_recording=chunks * DEFAULT_CHUNK,
          frames_per_s=round(total / statistics.median(times), 1), seconds=[round(t, 3) for t in times],
          peak_gib=_peak_gib(device))


def bench_conversion(idm: InverseActionPolicy, device: torch.device, tiny: bool, n_frames: int, n_recordings: int,
                     batch_size: int, work: Path) -> None:
    """Frames/s of label_and_convert over generated recordings without actions (one recording generated, copied)."""
    video, _ = write_synthetic_recording(work / "src", "rec", n_frames, seed=0)
    dirs = []
    for i in range(n_recordings):
        dirs.append(work / "in" / f"episode_{i:03d}")
        dirs[-1].mkdir(parents=True)
        shutil.copy(video, dirs[-1] / "video.mp4")
    config = dataclasses.replace(MineCLIPConfig.tiny(), embed_dim=512) if tiny else MineCLIPConfig.attn()
    mineclip = MineCLIP(config).to(device).eval()
    labeller = IDMLabeller(idm, device, "fp32", DEFAULT_CHUNK, batch_size=batch_size)
    options = ConversionOptions(min_timesteps=16, mineclip_batch_size=512)
    _reset_peak(device)
    start = time.perf_counter()
    outcomes = list(label_and_convert(dirs, work / "out", "video.mp4", labeller, {"benchmark": True}, mineclip, options,
                                      str(device), {"benchmark": True}))
    elapsed = time.perf_counter() - start
    failed = [o.message for o in outcomes if o.failed or o.episode is None]
    if failed:
        raise SystemExit(f"bench_idm: conversion failed: {failed[0]}")
    total = n_frames * n_recordings
    _line(device, benchmark="idm_conversion", idm_dtype="fp32", mineclip="tiny" if tiny else "attn (random)",
          recordings=n_recordings, frames_per_recording=n_frames, idm_batch=batch_size, seconds=round(elapsed, 2),
          frames_per_s=round(total / elapsed, 1), peak_gib=_peak_gib(device))


def main() -> None:
    """Build the IDM with random weights and run the three measurements."""
    args = parse_args()
    device = torch.device(args.device)
    recordings = args.recordings or (2 if args.tiny else 8)
    chunks = args.chunks or (1 if args.tiny else 4)
    repeats = args.repeats or (1 if args.tiny else 3)
    conversion_frames = args.conversion_frames or (140 if args.tiny else 1200)
    conversion_recordings = args.conversion_recordings or (2 if args.tiny else 4)
    torch.manual_seed(0)
    idm = InverseActionPolicy(idm_preset("tiny" if args.tiny else "4x")).to(device).eval()
    for dtype in args.dtypes.split(","):
        bench_labelling(idm, device, dtype, recordings, chunks, repeats)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_idm_"))
    try:
        bench_conversion(idm, device, args.tiny, conversion_frames, conversion_recordings, recordings, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
