"""Step 1 throughput against the number of conversion processes (--jobs), the way 1_generate_dataset.sh runs it.

    .venv/bin/python benchmarks/bench_conversion.py --jobs 1,2,4,8,16 --recordings 16 --frames 1200 --mineclip full

Generates one contractor-format recording (640x360 h264 + jsonl, data/generation/synthetic_contractor; encoding
640x360 frames costs ~13 ms each, so it is generated once) and copies it to --recordings names, then for each --jobs setting converts all of them from a local index into a fresh output directory with one
ConversionPool (each process: decode, cursor, resizes, MineCLIP, h264 encode, write), timed from the start of
the pool (process start-up and MineCLIP loading included) to the last episode. `--mineclip none` uses the tiny
demo MineCLIP (the CPU pipeline alone); `full` the real-size `attn` architecture with random weights (the compute
of attn.pth). One summary line per setting:

    conversion jobs=4 recordings=16 kept_frames=17000 seconds=23.1 frames_per_s=736 efficiency=0.93 device=...

efficiency = (frames/s with N jobs) / (N x frames/s with the first setting's jobs, per job): 1.0 is linear scaling.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from data.generation.contractor_index import ContractorIndex, recordings
from data.generation.conversion_jobs import OK, ConversionPool, ConversionTask, GoalEncoderSpec
from data.generation.episode_conversion import ConversionOptions
from data.generation.synthetic_contractor import write_synthetic_dataset
from mineclip_model.mineclip import MineCLIP, MineCLIPConfig, save_mineclip
from toolkit_utils import cli


def run_setting(jobs: int, found: list, out: Path, spec: GoalEncoderSpec, options: ConversionOptions) -> tuple[int, float]:
    """Convert every recording with `jobs` processes; returns (kept frames, seconds)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    kept = 0
    with ConversionPool(jobs, spec, progress=False) as pool:
        tasks = [ConversionTask(r.name, r.video, r.actions, str(out / r.name), {"kind": "benchmark"}, options) for r in found]
        futures = [(task, pool.submit(task)) for task in tasks]
        for task, future in futures:
            outcome = pool.outcome(task, future)
            if outcome.status != OK:
                raise SystemExit(f"bench_conversion: {task.name}: {outcome.status} {outcome.message}")
            kept += outcome.kept_frames
    return kept, time.perf_counter() - start


def main() -> None:
    p = cli.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=cli.comma_list(), default=["1", "2"], help="comma-separated process counts, e.g. 1,2,4,8,16")
    p.add_argument("--recordings", type=cli.positive_int, default=8, help="recordings converted per setting (>= the largest --jobs keeps every process busy)")
    p.add_argument("--frames", type=cli.positive_int, default=600, help="frames per generated recording")
    p.add_argument("--mineclip", choices=["none", "full"], default="none", help="none: tiny demo MineCLIP; full: real-size attn architecture, random weights")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu", help="where MineCLIP runs")
    p.add_argument("--mineclip_batch_size", type=cli.positive_int, default=256, help="frames per MineCLIP forward")
    p.add_argument("--workdir", default=None, help="where recordings and episodes go (default: a temp dir, removed at the end)")
    args = p.parse_args()
    jobs_list = [int(j) for j in args.jobs]
    if any(j < 1 for j in jobs_list):
        p.refuse("--jobs", ",".join(args.jobs), "every value must be >= 1", "e.g. --jobs 1,2,4,8")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_conversion_"))
    try:
        index_path = write_synthetic_dataset(work / "src", 1, args.frames, seed=0)
        index = json.loads(index_path.read_text())
        first = Path(index_path.parent / index["relpaths"][0]).with_suffix("")
        index["relpaths"] = []
        for i in range(args.recordings):
            copy = first.with_name(f"copy_{i:03d}")
            for suffix in (".mp4", ".jsonl"):
                shutil.copy(first.with_suffix(suffix), copy.with_suffix(suffix))
            index["relpaths"].append(f"data/{copy.name}.mp4")
        index_path.write_text(json.dumps(index))
        found, _ = recordings(ContractorIndex(str(index_path), index["basedir"], index["relpaths"]))
        weights = None
        if args.mineclip == "full":
            weights = work / "attn_random.pth"
            torch.manual_seed(0)
            save_mineclip(MineCLIP(MineCLIPConfig.attn()), weights)
        spec = GoalEncoderSpec(str(weights) if weights else None, args.mineclip == "none", args.device)
        options = ConversionOptions(min_timesteps=16, mineclip_batch_size=args.mineclip_batch_size)
        device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
        base = None
        for jobs in jobs_list:
            kept, seconds = run_setting(jobs, found, work / f"out_{jobs}", spec, options)
            rate = kept / seconds
            base = base or (rate / jobs)
            print(f"conversion jobs={jobs} recordings={len(found)} frames_per_recording={args.frames} kept_frames={kept} "
                  f"seconds={seconds:.1f} frames_per_s={rate:.0f} efficiency={rate / (jobs * base):.2f} "
                  f"mineclip={args.mineclip} device={device}", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
