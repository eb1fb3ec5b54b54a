"""End-to-end training throughput: training/train.py on generated episodes, launched as a user launches it.

    .venv/bin/python benchmarks/bench_train_loop.py --work_dir /tmp/steve1_bench_loop --max_steps 60

Writes --num_episodes generated episodes (the textured block world of bench_video_io.py, random actions
and embeddings; several processes) and a sampling, then runs train.py twice at the guide's defaults
(2x policy from random weights, batch 8, accumulation 2, T 320, trunc_t 64, --num_workers, --compile,
bf16): a cold launch (empty compile cache, unless --keep_cache) for --max_steps steps, then a warm launch
of a few steps that finds the compile cache the first one filled. Each launch is one JSON line:
  frames_per_s        frames over wall time between the first logged step after --skip_steps and the last
  peak_gib            train.py's memory/peak_gib (its console block) at the last logged step
  first_step_s        seconds from launch to the first optimizer step's log line (imports, model, data
                      workers, the starting validation and compilation included); validation_s says how
                      much of it was the starting validation
  slow_steps          steps after the first that took over 3x the median (a recompilation shows here)
  recompiles_after_first_step   'Recompiling function' lines of TORCH_LOGS=recompiles after the first step
                      (before it, the three CNN stacks and the first transformer block each compile once)
The episodes are kept in --work_dir and reused while their settings match.
"""

from __future__ import annotations

import argparse
import getpass
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_loader import episode_content  # same directory: generated frames, actions and embeddings
from data.episode import EpisodeWriter
from toolkit_utils import cli
from training.metrics import PEAK_MEMORY_TAG

REPO = Path(__file__).resolve().parent.parent
FRAMES_PER_STEP_KEY = "frames_per_optimizer_step"
# train.py's console block line '\tmemory/peak_gib: 13.3' (training/metrics.py: metrics_block_text)
PEAK_MEMORY_LINE = re.compile(rf"^\s*{re.escape(PEAK_MEMORY_TAG)}: ([-+\d.eE]+|nan|inf)\s*$")


def parse_args() -> argparse.Namespace:
    p = cli.ArgumentParser(description=__doc__)
    p.add_argument("--work_dir", default="/tmp/steve1_bench_loop", help="episodes, sampling, checkpoints and logs")
    p.add_argument("--num_episodes", type=int, default=24, help="training episodes (+1 for validation)")
    p.add_argument("--num_frames", type=int, default=3000, help="frames per episode")
    p.add_argument("--max_steps", type=int, default=60, help="optimizer steps of the cold launch")
    p.add_argument("--warm_steps", type=int, default=5, help="optimizer steps of the warm launch (0: no warm launch; a multiple of the steps between batch ends, as --max_steps)")
    p.add_argument("--skip_steps", type=int, default=5, help="steps left out of frames_per_s (compilation, warm-up)")
    p.add_argument("--batch_size", type=int, default=8, help="as the guide")
    p.add_argument("--gradient_accumulation_steps", type=int, default=2, help="as the guide")
    p.add_argument("--T", type=int, default=320, help="as the guide")
    p.add_argument("--trunc_t", type=int, default=64, help="as the guide")
    p.add_argument("--num_workers", type=int, default=6, help="DataLoader workers")
    p.add_argument("--in_model", default="2x", help="policy preset or .model file (random weights)")
    p.add_argument("--mixed_precision", default="bf16", help="bf16, or no (CPU smoke test)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="train.py --compile")
    p.add_argument("--extra", default="", help="more train.py arguments, e.g. '--low_memory'")
    p.add_argument("--keep_cache", action="store_true", help="do not empty the compile cache before the cold launch")
    p.add_argument("--processes", type=int, default=os.cpu_count(), help="processes that write the episodes")
    return p.parse_args()


def write_episode(job: tuple[str, int, int]) -> str:
    path, num_frames, seed = job
    frames, buttons, camera, embeds = episode_content(num_frames, seed)
    with EpisodeWriter(path, source={"kind": "benchmark", "seed": seed}, overwrite=True) as writer:
        for frame in frames:
            writer.append_frame(frame)
        writer.append_actions(buttons, camera)
        writer.set_embeds(embeds)
    return path


def make_data(args: argparse.Namespace) -> Path:
    """Episodes and <work_dir>/samplings/bench_{train,val}.txt; reused when settings.json matches."""
    work = Path(args.work_dir)
    episodes = work / "episodes"
    settings = {"num_episodes": args.num_episodes, "num_frames": args.num_frames}
    done = episodes / "settings.json"
    paths = [str(episodes / f"episode_{i:03d}") for i in range(args.num_episodes + 1)]
    if not (done.is_file() and json.loads(done.read_text()) == settings):
        shutil.rmtree(episodes, ignore_errors=True)
        episodes.mkdir(parents=True)
        start = time.time()
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
            pool.map(write_episode, [(p, args.num_frames, i) for i, p in enumerate(paths)])
        done.write_text(json.dumps(settings))
        print(f"wrote {len(paths)} episodes x {args.num_frames} frames in {time.time() - start:.1f} s", flush=True)
    samplings = work / "samplings"
    samplings.mkdir(exist_ok=True)
    (samplings / "bench_train.txt").write_text("\n".join(paths[1:]) + "\n")
    (samplings / "bench_val.txt").write_text(paths[0] + "\n")
    return samplings


def launch(args: argparse.Namespace, samplings: Path, name: str, max_steps: int) -> dict:
    """Run train.py once; time-stamp its output lines; summarise them."""
    work = Path(args.work_dir)
    run_dir = work / name
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, str(REPO / "training" / "train.py"), "--in_model", args.in_model, "--mixed_precision", args.mixed_precision,
           "--batch_size", str(args.batch_size), "--gradient_accumulation_steps", str(args.gradient_accumulation_steps),
           "--T", str(args.T), "--trunc_t", str(args.trunc_t), "--num_workers", str(args.num_workers),
           "--max_steps", str(max_steps), "--log_freq", "1", "--val_freq_begin", "1000000", "--val_freq", "1000000",
           "--save_freq", "1000000", "--snapshot_every_n_frames", "0", "--sampling", "bench",
           "--sampling_dir", str(samplings), "--checkpoint_dir", str(run_dir / "checkpoint"), "--log_dir", str(run_dir / "logs"),
           "--out_weights", str(run_dir / "bench.weights"), "--compile", "yes" if args.compile else "no", *args.extra.split()]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TORCH_LOGS": "recompiles", "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    start = time.time()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO) as proc:
        for line in proc.stdout:
            lines.append((time.time() - start, line.rstrip("\n")))
    (work / f"{name}.log").write_text("\n".join(f"{t:8.2f} {line}" for t, line in lines) + "\n")
    result = summarise(lines, args)
    result.update({"benchmark": "train_loop", "launch": name, "returncode": proc.returncode, "extra": args.extra,
                   "batch_size": args.batch_size, "gradient_accumulation_steps": args.gradient_accumulation_steps,
                   "T": args.T, "trunc_t": args.trunc_t, "num_workers": args.num_workers, "total_s": round(time.time() - start, 1)})
    if proc.returncode and lines:
        result["last_line"] = lines[-1][1][-300:]  # why it failed (the whole output is in <work_dir>/<launch>.log)
    return result


def summarise(lines: list[tuple[float, str]], args: argparse.Namespace) -> dict:
    """The JSON line of one launch from train.py's time-stamped output lines (the module docstring lists its keys)."""
    step_times: dict[int, float] = {}
    peak = None
    validation_start = validation_end = None
    frames_per_step = args.batch_size * args.trunc_t * args.gradient_accumulation_steps
    current = None
    for t, line in lines:
        if (m := re.search(r"Metrics for step (\d+):", line)) is not None:
            current = int(m.group(1))
            step_times[current] = t
        if current is not None and (m := PEAK_MEMORY_LINE.match(line)) is not None:
            peak = float(m.group(1))
        if "Data:" in line and validation_start is None:
            validation_start = t  # the starting validation follows the data line (then model setup is done)
        if "Validation loss at step 0" in line:
            validation_end = t
    steps = sorted(step_times)
    result: dict = {"steps_logged": len(steps), "peak_gib": peak}
    if steps:
        result["first_step_s"] = round(step_times[steps[0]], 1)
        result["recompiles_after_first_step"] = sum(
            "Recompiling function" in line for t, line in lines if t > step_times[steps[0]]
        )
    if validation_start is not None and validation_end is not None:
        result["validation_s"] = round(validation_end - validation_start, 1)
    timed = [s for s in steps if s > args.skip_steps]
    if len(timed) >= 2:
        span = step_times[timed[-1]] - step_times[timed[0]]
        result["frames_per_s"] = round((timed[-1] - timed[0]) * frames_per_step / span, 1)
        gaps = [step_times[b] - step_times[a] for a, b in zip(steps[1:], steps[2:])]
        if gaps:  # two logged steps give one timed span but no gap after the first step
            median = statistics.median(gaps)
            result["median_step_s"] = round(median, 3)
            result["slow_steps"] = [b for (a, b), g in zip(zip(steps[1:], steps[2:]), gaps) if g > 3 * median]
    return result


def main() -> None:
    args = parse_args()
    samplings = make_data(args)
    if not args.keep_cache:
        for cache in (os.environ.get("TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}")),
                      os.environ.get("TRITON_CACHE_DIR", os.path.expanduser("~/.triton/cache"))):
            shutil.rmtree(cache, ignore_errors=True)
    print(json.dumps(launch(args, samplings, "cold", args.max_steps)), flush=True)
    if args.warm_steps:
        print(json.dumps(launch(args, samplings, "warm", args.warm_steps)), flush=True)


if __name__ == "__main__":
    main()
