"""The whole guide on a built-in example, on a CPU in a few minutes: generated data, a tiny model.

    python examples/end_to_end.py --workdir example_run

1. Generate contractor-format recordings (640x360 h264 + jsonl) whose frames show which action is taken,
   and serve them with an index from a local HTTP server on 127.0.0.1 (as OpenAI's bucket serves the real ones).
2. Step 1 (1_generate_dataset.sh): download and convert them (random tiny MineCLIP: the demo flag).
3. Step 2 (2_create_sampling.sh): split into training and validation episodes.
4. Step 3 (3_train_finetune_template.sh): train the tiny policy from a saved random initialisation.
5. Evaluate offline: the trained weights must predict the recorded actions better than the start,
   and the training curves are drawn to a PNG.
Every step runs the real script with its variables set in the environment; all output stays in --workdir.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="example_run", help="everything the demo writes goes here (recreated)")
    p.add_argument("--episodes", type=int, default=6, help="recordings to generate")
    p.add_argument("--frames", type=int, default=360, help="frames per recording (20 per second)")
    p.add_argument("--train_frames", type=int, default=4800, help="frames to train on (TOTAL_FRAMES; 16 per optimizer step)")
    return p.parse_args(argv)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def local_server(directory: Path):
    """Serve `directory` on 127.0.0.1 (a random free port) until the block ends; yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def run_script(script: str, env: dict[str, str], *extra: str) -> None:
    """Run one of the guide's scripts from the repo root with its variables overridden; stop on failure."""
    print(f"\n=== bash {script} {' '.join(extra)}", flush=True)
    start = time.time()
    full_env = {**os.environ, "TOOLKIT_PYTHON": sys.executable, "ACCELERATE": str(Path(sys.executable).with_name("accelerate")),
                **env}
    if script == "1_generate_dataset.sh":  # step 1 refuses its old names, even when the caller's shell set them
        full_env.pop("PYTHON", None), full_env.pop("BATCH_SIZE", None)
    else:  # the other scripts still read PYTHON
        full_env["PYTHON"] = sys.executable
    result = subprocess.run(["bash", script, *extra], cwd=REPO_ROOT, env=full_env)
    if result.returncode != 0:
        raise SystemExit(f"{script} failed with exit status {result.returncode}")
    print(f"=== {script} done in {time.time() - start:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from data.generation.synthetic_contractor import write_synthetic_dataset
    from embed_conditioned_policy import SteveAgentPolicy
    from training.evaluate_offline import main as evaluate_main
    from vpt_model.config import preset
    from vpt_model.model_files import save_policy_weights

    work = Path(args.workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    started = time.time()

    dataset, samplings, served = work / "dataset_contractor", work / "samplings", work / "contractor_server"
    served.mkdir()
    with local_server(served) as url:
        print(f"=== generating {args.episodes} contractor-format recordings of {args.frames} frames, served at {url}", flush=True)
        write_synthetic_dataset(served, args.episodes, args.frames, seed=0, basedir=url)
        run_script("1_generate_dataset.sh", {
            "INDEXES": url + "index.json", "N_EPISODES_CONTRACTOR": "-1", "OUTPUT_DIR": str(dataset),
            "CACHE_DIR": str(work / "contractor_cache"), "DEMO_RANDOM_MINECLIP": "1", "MIN_TIMESTEPS": "200",
            "MINECLIP_BATCH_SIZE": "64",
        })

    T = 64
    run_script("2_create_sampling.sh", {
        "NAME": "demo", "OUTPUT_DIR": str(samplings), "DATASET_DIRS": str(dataset), "VAL_FRAMES": "500", "T": str(T),
    })

    torch.manual_seed(0)
    init = work / "weights" / "tiny_init.weights"
    save_policy_weights(SteveAgentPolicy(preset("tiny")), init)
    out_weights = work / "weights" / "demo.weights"
    checkpoint_dir = work / "finetuning_checkpoint"
    run_script("3_train_finetune_template.sh", {
        "SAMPLING_NAME": "demo", "SAMPLING_DIR": str(samplings), "OUT_WEIGHTS": str(out_weights), "IN_MODEL": "tiny",
        "IN_WEIGHTS": str(init), "LEARNING_RATE": "3e-3", "TOTAL_FRAMES": str(args.train_frames),
        "WARMUP_FRAMES": "160", "BATCH_SIZE": "2", "GRADIENT_ACCUM_STEPS": "1", "T": str(T), "TRUNC_T": "8",
        "VAL_FREQ": "100", "VAL_FREQ_BEGIN": "50", "VAL_FREQ_SWITCH_STEPS": "100", "SAVE_FREQ": "100",
        "SNAPSHOT_FRAMES": "1024", "P_UNCOND": "0.1", "CHECKPOINT_DIR": str(checkpoint_dir),
        "LOG_DIR": str(work / "logs"), "NUM_WORKERS": "0", "MIXED_PRECISION": "no", "COMPILE": "",
    }, "--cpu")

    print("\n=== evaluating on the validation episodes (no Minecraft needed)", flush=True)
    best = out_weights.with_name("demo_best.weights")
    evaluate_main(["--in_model", "tiny", "--weights", str(init), str(best), "--sampling", "demo",
                   "--sampling_dir", str(samplings), "--T", str(T), "--trunc_t", "8", "--cpu",
                   "--tensorboard_dir", str(checkpoint_dir / "logs"), "--plot_dir", str(work)])

    print(f"\nDone in {time.time() - started:.0f}s. Everything is under {work}:")
    for label, path in [("episodes (step 1)", dataset), ("sampling lists (step 2)", samplings),
                        ("weights: _latest/_best/_snapshot (step 3)", out_weights.parent),
                        ("resumable checkpoints + TensorBoard", checkpoint_dir), ("text log", work / "logs"),
                        ("training curves", work / "training_curves.png")]:
        print(f"  {label:45s} {path}")
    print(f"Watch the run: tensorboard --logdir {checkpoint_dir / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
