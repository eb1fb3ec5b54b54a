"""Conversion throughput of step 1: decode 640x360 video + convert + write the episode (+ MineCLIP embeddings).

    python benchmarks/bench_conversion.py --frames 2400 --mineclip none,full --device cuda

Uses generated contractor-format recordings (h264 640x360 + jsonl). `none`: no embedding work (a tiny random
MineCLIP, the decode/resize/encode cost alone); `full`: the real-size MineCLIP architecture with random weights
(the same compute as attn.pth). Reports kept frames per second. Prints one JSON line per setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from data.generation.contractor_actions import load_actions_file
from data.generation.episode_conversion import ConversionOptions, convert_recording
from data.generation.synthetic_contractor import write_synthetic_recording
from mineclip_model.mineclip import MineCLIP, MineCLIPConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=2400, help="frames of the generated recording")
    p.add_argument("--mineclip", default="none,full", help="comma-separated: none (tiny random), full (real size)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="device for MineCLIP")
    p.add_argument("--batch_size", type=int, default=512, help="frames per MineCLIP forward")
    p.add_argument("--workdir", default=None, help="where the recording and episodes go (default: a temp dir)")
    args = p.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_conversion_"))
    video, jsonl = write_synthetic_recording(work / "src", "rec", args.frames, seed=0)
    actions = load_actions_file(jsonl)
    for setting in args.mineclip.split(","):
        config = dataclasses.replace(MineCLIPConfig.tiny(), embed_dim=512) if setting == "none" else MineCLIPConfig.attn()
        model = MineCLIP(config).to(args.device).eval()
        options = ConversionOptions(min_timesteps=16, embed_batch_size=args.batch_size)
        start = time.perf_counter()
        episode, message = convert_recording(video, actions, work / f"out_{setting}", model, options,
                                             {"kind": "benchmark"}, args.device, progress=False)
        elapsed = time.perf_counter() - start
        kept = int(message.split()[0])
        print(json.dumps({"benchmark": "conversion", "mineclip": setting, "source_frames": args.frames, "kept_frames": kept,
                          "seconds": round(elapsed, 2), "frames_per_s": round(kept / elapsed, 1),
                          "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"}), flush=True)


if __name__ == "__main__":
    main()
