"""Throughput of STEVE-1's per-frame MineCLIP embedding (embed_frames_sliding) on random uint8 frames.

Measures the whole call, numpy frames in -> numpy embeddings out (host-to-device copies
included), with random weights (speed does not depend on their values). Prints a table and
one JSON line (also appended to --json_out when given).

  .venv/bin/python benchmarks/bench_mineclip_embedding.py --device cuda --num_frames 8192
  .venv/bin/python benchmarks/bench_mineclip_embedding.py --device cpu --tiny --num_frames 256   # smoke test
(from the repo root; prefix PYTHONPATH=. where the repo is not pip-installed)
Reference (the original STEVE-1 code on an H100): the original runs 236 frames/s; its image encoder alone
7,362 frames/s (bf16, batch 1024).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from mineclip_model.embedding import AMP_DTYPES, DEFAULT_BATCH_SIZE, embed_frames_sliding
from mineclip_model.image_encoder import MINECLIP_FRAME_HEIGHT, MINECLIP_FRAME_WIDTH, RGB_CHANNELS
from mineclip_model.mineclip import MineCLIP, MineCLIPConfig
from toolkit_utils import cli


def parse_args() -> argparse.Namespace:
    """Command-line settings."""
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device to run on")
    parser.add_argument("--num_frames", type=int, default=8192, help="frames in the synthetic video")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="frames per image-encoder call")
    parser.add_argument("--dtype", default="auto", choices=["auto", *AMP_DTYPES], help="autocast dtype (auto: fp16 on CUDA, fp32 on CPU)")
    parser.add_argument("--compile", action="store_true", help="run the image encoder through torch.compile")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (compilation, cuDNN autotuning)")
    parser.add_argument("--tiny", action="store_true", help="use the tiny test configuration (CPU smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the frames and the weights")
    parser.add_argument("--json_out", default=None, help="append the JSON result line to this file")
    return parser.parse_args()


def main() -> None:
    """Build the model, time embed_frames_sliding, report frames per second."""
    args = parse_args()
    torch.manual_seed(args.seed)
    config = MineCLIPConfig.tiny() if args.tiny else MineCLIPConfig.attn()
    model = MineCLIP(config).to(args.device).eval()
    shape = (args.num_frames, MINECLIP_FRAME_HEIGHT, MINECLIP_FRAME_WIDTH, RGB_CHANNELS)
    frames = np.random.default_rng(args.seed).integers(0, 256, size=shape, dtype=np.uint8)
    cuda = torch.device(args.device).type == "cuda"

    def run() -> float:
        start = time.perf_counter()
        embed_frames_sliding(model, frames, args.batch_size, progress=False, dtype=args.dtype, compile=args.compile)
        return time.perf_counter() - start  # the call returns numpy, so the device is already synchronised

    for _ in range(args.warmup):
        run()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = [run() for _ in range(args.repeats)]
    fps = [args.num_frames / s for s in seconds]
    result = {
        "bench": "mineclip_embed_frames_sliding",
        "device": torch.cuda.get_device_name(args.device) if cuda else "cpu",
        "torch": torch.__version__,
        "config": "tiny" if args.tiny else "attn",
        "num_frames": args.num_frames,
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "compile": args.compile,
        "repeats": args.repeats,
        "median_frames_per_s": round(statistics.median(fps), 1),
        "frames_per_s": [round(f, 1) for f in fps],
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated(args.device) / 2**30, 2) if cuda else None,
    }
    print(f"{result['device']}  {result['config']}  batch {args.batch_size}  dtype {args.dtype}  compile {args.compile}")
    print(f"median {result['median_frames_per_s']:.1f} frames/s over {args.repeats} runs of {args.num_frames} frames")
    line = json.dumps(result)
    print(line)
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
