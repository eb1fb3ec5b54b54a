"""Bad settings of the training entrypoints, table-driven: exit status 2, one line naming the setting and the fix,
no traceback, nothing written. train.py, train_prior.py and evaluate_offline.py run in this process; the template
runs as a user runs it (bash), where the check before `accelerate launch` must keep its traceback away."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from embed_conditioned_policy import SteveAgentPolicy
from prior_model import train_prior
from prior_model.prior import GoalPrior, PriorConfig, save_prior
from prior_model.prior_dataset import PriorPairs, save_npz_pairs
from training import evaluate_offline, train
from training_helpers import REPO_ROOT, sampling, train_argv  # noqa: F401 - sampling is a fixture
from vpt_model.config import preset
from vpt_model.model_files import save_policy_weights


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Files the rows refer to, outside the folder that must stay empty."""
    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    policy = SteveAgentPolicy(preset("tiny"))
    save_policy_weights(policy, root / "tiny.weights")
    state = policy.state_dict()
    del state["pi_head.camera.linear_layer.bias"]
    torch.save(state, root / "mismatched.weights")
    rng = np.random.default_rng(0)
    pairs = PriorPairs(rng.standard_normal((50, 8)).astype(np.float32), rng.standard_normal((50, 8)).astype(np.float32))
    save_npz_pairs(pairs, root / "pairs.npz")
    (root / "pairs.pkl").write_bytes(pickle.dumps({"text_embeddings": list(pairs.text_embeds),
                                                   "visual_embeddings": list(pairs.visual_embeds)}))
    (root / "orig.pkl").write_bytes((root / "pairs.pkl").read_bytes())  # the original data.pkl, not converted yet
    save_npz_pairs(PriorPairs(pairs.text_embeds[:10], pairs.visual_embeds[:10]), root / "other.npz")
    save_prior(GoalPrior(PriorConfig(embed_dim=8, hidden_dim=16, latent_dim=4)), root / "earlier_prior.pt")
    return root


# (train.py settings to change or raw arguments to add, what the one line must contain). "env" holds environment
# variables (WORLD_SIZE: what the template's check passes as NUM_PROCESSES); "cpu": False leaves out --cpu.
# The rows describe a machine without a GPU (test_train_py hides any GPU), where the toy settings run.
TRAIN_ROWS = {
    "negative learning rate": ({"learning_rate": "-0.003"}, ["argument --learning_rate: -0.003 is out of range: must be > 0"]),
    "zero trunc_t": ({"trunc_t": 0}, ["argument --trunc_t: 0 is out of range: must be >= 1"]),
    "zero save_freq": ({"save_freq": 0}, ["argument --save_freq: 0 is out of range: must be >= 1"]),
    "negative workers": ({"num_workers": -1}, ["argument --num_workers: -1 is out of range: must be >= 0"]),
    "freeze typo": ({"freeze": "cnnn"}, ["argument --freeze: unknown 'cnnn': choose from cnn, goal, heads, lastlayer, transformer"]),
    "missing .model": ({"in_model": "nowhere/2x.model"}, ["--in_model nowhere/2x.model: not found; download_weights.sh puts 2x.model"]),
    "zero T": ({"T": 0}, ["argument --T: 0 is out of range: must be >= 1"]),
    "negative clipping": ({"max_grad_norm": -1}, ["argument --max_grad_norm: -1 is out of range: must be > 0"]),
    "p_uncond above 1": ({"p_uncond": 1.5}, ["argument --p_uncond: 1.5 is out of range: must be >= 0 and <= 1"]),
    "zero frames": ({"n_frames": 0}, ["argument --n_frames: 0 is out of range: must be >= 1"]),
    "abbreviation": ({}, ["unrecognized arguments: --learning_rat 1e-4"], ["--learning_rat", "1e-4"]),
    "T not whole windows": ({"T": 30}, ["--T 30: is not a multiple of --trunc_t 8; use e.g. --T 320 --trunc_t 64"]),
    "missing sampling": ({"sampling": "missing"}, ["--sampling ", "missing_train.txt: not found; run 2_create_sampling.sh"]),
    "fp16": ({"mixed_precision": "fp16"}, ["argument --mixed_precision: invalid choice: 'fp16'"]),
    "max_steps inside a batch": ({"max_steps": 3}, ["--max_steps 3: does not end where a batch ends", "use a multiple of 2, e.g. 4"]),
    "missing start weights": ({"in_weights": "nowhere.weights"}, ["--in_weights nowhere.weights: not found; download_weights.sh"]),
    "zero batch": ({"batch_size": 0}, ["argument --batch_size: 0 is out of range: must be >= 1"]),
    "negative seed": ({"seed": -1}, ["argument --seed: -1 is out of range: must be >= 0"]),
    "goal gap below 15": ({"min_btwn_goals": 10}, ["argument --min_btwn_goals: 10 is out of range: must be >= 15"]),
    "goal gaps empty": ({"min_btwn_goals": 40, "max_btwn_goals": 30},
                        ["--max_btwn_goals 30: must exceed --min_btwn_goals 40; gaps are drawn from"]),
    "out_weights suffix": ({"out_weights": "x.pt"}, ["--out_weights x.pt: must end in .weights"]),
    "T longer than episodes": ({"T": 200, "max_steps": None}, ["--sampling toy: --T 200 needs episodes of >= 215 frames", "create the sampling again"]),
    "weights of another model": ({"in_weights": "{inputs}/mismatched.weights"},
                                 ["/mismatched.weights: ", "missing keys (1): pi_head.camera.linear_layer.bias",
                                  "use weights of the --in_model architecture (tiny)"]),
    "batch larger than the data": ({"batch_size": 40}, ["--batch_size 40: x 1 processes needs more samples than the 12", "lower --batch_size"]),
    "compile value": ({"compile": "maybe"}, ["argument --compile: invalid choice: 'maybe'"]),
    "checkpoint folder is a file": ({"checkpoint_dir": "{inputs}/tiny.weights"}, ["tiny.weights: is a file, not a folder"]),
    "everything frozen": ({"freeze": "cnn,goal,heads,lastlayer,transformer"}, ["leaves nothing to train", "--freeze cnn,transformer"]),
    "warmup longer than the run": ({"warmup_frames": 5000}, [
        "--warmup_frames 5_000: is more than --n_frames 4_096: the learning rate would never reach its peak; use at most "
        "--n_frames (WARMUP_FRAMES <= TOTAL_FRAMES in the scripts), e.g. a tenth: --warmup_frames 409"]),
    "compile with --cpu": ({"compile": "yes"}, ["--compile yes: training runs on the CPU here (--cpu is set)",
                                                "use --compile auto or no (COMPILE in the scripts)"]),
    "compile without a GPU": ({"compile": "yes", "cpu": False}, ["--compile yes: training runs on the CPU here (no GPU is visible)"]),
    "two processes without GPUs": ({"env": {"WORLD_SIZE": "2"}, "cpu": False}, [
        "NUM_PROCESSES 2: needs 2 GPUs (one per process); this machine has 0; use NUM_PROCESSES=1 (.venv/bin/accelerate launch "
        "--num_processes 1), or add --cpu to train in CPU processes"]),
    "processes of this machine, not of all machines": ({"env": {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}, "cpu": False},
                                                       ["NUM_PROCESSES 2: needs 2 GPUs (one per process); this machine has 0"]),
    "out_weights folder is a file": ({"out_weights": "{inputs}/tiny.weights/x.weights"}, [
        "/tiny.weights/x.weights: ", "/tiny.weights is a file, not a folder; choose a folder you can write (OUT_WEIGHTS in the scripts"]),
    "out_weights under /proc": ({"out_weights": "/proc/steve1_test/x.weights"}, [
        "--out_weights /proc/steve1_test/x.weights: cannot be written (", ": /proc/steve1_test); choose a folder you can write (OUT_WEIGHTS"]),
    "log folder under /proc": ({"log_dir": "/proc/steve1_test_logs"}, [
        "--log_dir /proc/steve1_test_logs: cannot be written (", "choose a folder you can write (LOG_DIR in the scripts"]),
    "checkpoint folder under /proc": ({"checkpoint_dir": "/proc/steve1_test_ckpt"}, [
        "--checkpoint_dir /proc/steve1_test_ckpt: cannot be written (", "(CHECKPOINT_DIR in the scripts"]),
    "checkpoint folder under /sys": ({"checkpoint_dir": "/sys/steve1_test_ckpt"}, [
        "--checkpoint_dir /sys/steve1_test_ckpt: cannot be written (", "(CHECKPOINT_DIR in the scripts"]),
    "log folder inside a file": ({"log_dir": "{inputs}/tiny.weights/logs"}, ["/tiny.weights is a file, not a folder; choose a folder"]),
}

PRIOR_ROWS = {
    "zero lr": (["--lr", "0"], ["argument --lr: 0 is out of range: must be > 0"]),
    "missing data": (["--data_path", "{inputs}/nowhere.npz"],
                     ["--data_path {inputs}/nowhere.npz: not found; for the original pairs run WITH_PRIOR_DATASET=1 bash "
                      "download_weights.sh (it writes data/prior_dataset/data.pkl), then convert them once: .venv/bin/python "
                      "prior_model/train_prior.py --data_path data/prior_dataset/data.pkl --trust_pickle --convert_only"]),
    "original pickle not converted": (["--data_path", "{inputs}/orig.npz"],
                                      ["--data_path {inputs}/orig.npz: not found; the original {inputs}/orig.pkl is there: "
                                       "convert it once with .venv/bin/python prior_model/train_prior.py --data_path "
                                       "{inputs}/orig.pkl --trust_pickle --convert_only"]),
    "existing output": (["--output_path", "{inputs}/earlier_prior.pt"],
                        ["--output_path {inputs}/earlier_prior.pt: already exists (a prior trained earlier); choose another "
                         "--output_path (OUTPUT_PATH in 4_train_prior.sh), or replace it with --overwrite (OVERWRITE=1)"]),
    "output is the starting prior, even with --overwrite": (
        ["--in_weights", "{inputs}/earlier_prior.pt", "--output_path", "{inputs}/earlier_prior.pt", "--overwrite"],
        ["--output_path {inputs}/earlier_prior.pt: is --in_weights; training would replace the prior it starts from; "
         "choose another --output_path (OUTPUT_PATH in 4_train_prior.sh)"]),
    "output is a folder": (["--output_path", "{inputs}", "--overwrite"], ["--output_path {inputs}: is a folder; name the .pt file to write"]),
    "conversion over other pairs": (["--data_path", "{inputs}/pairs.pkl", "--trust_pickle", "--convert_only", "--npz_path",
                                     "{inputs}/other.npz"],
                                    ["--npz_path {inputs}/other.npz: already exists with other pairs; choose another "
                                     "--npz_path, or replace it with --overwrite"]),
    "untrusted pickle": (["--data_path", "{inputs}/pairs.pkl"], ["pairs.pkl: is a Python pickle", "add --trust_pickle if"]),
    "validation too large": (["--n_validation", "80"], ["--n_validation 80: must be between 1 and 49", "lower --n_validation"]),
    "zero batch": (["--batch_size", "0"], ["argument --batch_size: 0 is out of range: must be >= 1"]),
    "device name": (["--device", "gpu0"], ["--device gpu0: is not a torch device; use auto, cpu, cuda"]),
    "missing start prior": (["--in_weights", "{inputs}/nowhere.pt"], ["--in_weights ", "nowhere.pt: not found"]),
}

EVALUATE_ROWS = {
    "missing weights": (["--weights", "{inputs}/nowhere.weights"], ["--weights ", "nowhere.weights: not found"]),
    "T not whole windows": (["--T", "30"], ["--T 30: is not a multiple of --trunc_t 8"]),
    "split name": (["--split", "test"], ["argument --split: invalid choice: 'test'"]),
    "zero every_nth": (["--val_every_nth", "0"], ["argument --val_every_nth: 0 is out of range: must be >= 1"]),
    "weights of another model": (["--weights", "{inputs}/mismatched.weights"], ["missing keys (1)", "use weights of the --in_model"]),
    "missing TensorBoard folder": (["--tensorboard_dir", "{inputs}/nowhere"], ["--tensorboard_dir ", "nowhere: not found"]),
    "plot folder inside a file": (["--plot_dir", "{inputs}/tiny.weights/plots"],
                                  ["--plot_dir ", "/tiny.weights is a file, not a folder; choose a folder you can write"]),
    "plot folder under /proc": (["--plot_dir", "/proc/steve1_test_plots"], ["--plot_dir /proc/steve1_test_plots: cannot be written ("]),
}


def assert_one_line_refusal(code: int | None, err: str, program: str, expected: list[str]) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{program}: ") and "Traceback" not in err, err
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])


def run_in_process(main, argv: list[str], capsys) -> tuple[int | None, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("row", sorted(TRAIN_ROWS))
def test_train_py(row, sampling, inputs, tmp_path, capsys, monkeypatch):
    changes, expected, *extra = TRAIN_ROWS[row]
    monkeypatch.chdir(tmp_path)  # default paths (logs/training, data/finetuning_checkpoint) would land here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    changes = dict(changes)
    for name, value in changes.pop("env", {}).items():
        monkeypatch.setenv(name, value)
    cpu = changes.pop("cpu", True)
    changes = {k: v.format(inputs=inputs) if isinstance(v, str) else v for k, v in changes.items()}
    argv = train_argv(sampling, tmp_path / "run", **{"max_steps": 2, **changes}) + (extra[0] if extra else [])
    argv = argv if cpu else [a for a in argv if a != "--cpu"]
    assert_one_line_refusal(*run_in_process(train.main, argv, capsys), "training/train.py", expected)
    assert not list(tmp_path.rglob("*"))


@pytest.mark.parametrize("row", sorted(PRIOR_ROWS))
def test_train_prior_py(row, inputs, tmp_path, capsys, monkeypatch):
    extra, expected = PRIOR_ROWS[row]
    monkeypatch.chdir(tmp_path)
    argv = ["--data_path", str(inputs / "pairs.npz"), "--output_path", str(tmp_path / "out" / "prior.pt"),
            "--log_dir", str(tmp_path / "logs"), "--hidden_dim", "16", "--latent_dim", "4", "--device", "cpu",
            "--n_epochs", "1", "--n_validation", "10"] + [x.format(inputs=inputs) for x in extra]
    before = {p: p.read_bytes() for p in inputs.iterdir()}
    assert_one_line_refusal(*run_in_process(train_prior.main, argv, capsys), "prior_model/train_prior.py",
                            [x.format(inputs=inputs) for x in expected])
    assert not list(tmp_path.rglob("*"))
    assert {p: p.read_bytes() for p in inputs.iterdir()} == before  # the inputs (an earlier prior too) stay as they were


@pytest.mark.parametrize("row", sorted(EVALUATE_ROWS))
def test_evaluate_offline_py(row, sampling, inputs, tmp_path, capsys, monkeypatch):
    extra, expected = EVALUATE_ROWS[row]
    monkeypatch.chdir(tmp_path)
    argv = ["--in_model", "tiny", "--weights", str(inputs / "tiny.weights"), "--sampling", "toy", "--sampling_dir",
            str(sampling), "--T", "32", "--trunc_t", "8", "--cpu", "--plot_dir", str(tmp_path / "plots")]
    argv += [x.format(inputs=inputs) for x in extra]
    assert_one_line_refusal(*run_in_process(evaluate_offline.main, argv, capsys), "training/evaluate_offline.py", expected)
    assert not list(tmp_path.rglob("*"))


TEMPLATE_ROWS = {
    "BATCH_SIZE=0": ({"BATCH_SIZE": "0"}, ["argument --batch_size: 0 is out of range: must be >= 1"]),
    "FREEZE typo": ({"FREEZE": "cnn,transfomer"}, ["argument --freeze: unknown 'transfomer': choose from cnn"]),
    "NUM_PROCESSES=2 without GPUs": ({"NUM_PROCESSES": "2", "CUDA_VISIBLE_DEVICES": ""},
                                     ["NUM_PROCESSES 2: needs 2 GPUs (one per process); this machine has 0; use NUM_PROCESSES=1"]),
    "OUT_WEIGHTS under /proc": ({"OUT_WEIGHTS": "/proc/steve1_test/toy.weights"},
                                ["--out_weights /proc/steve1_test/toy.weights: cannot be written (", "(OUT_WEIGHTS in the scripts"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("row", sorted(TEMPLATE_ROWS))
def test_template(row, sampling, inputs, tmp_path):
    changes, expected = TEMPLATE_ROWS[row]
    env = {**os.environ, "PYTHON": sys.executable, "ACCELERATE": str(Path(sys.executable).with_name("accelerate")),
           "SAMPLING_NAME": "toy", "SAMPLING_DIR": str(sampling), "IN_MODEL": "tiny", "IN_WEIGHTS": str(inputs / "tiny.weights"),
           "OUT_WEIGHTS": str(tmp_path / "w" / "toy.weights"), "CHECKPOINT_DIR": str(tmp_path / "ckpt"),
           "LOG_DIR": str(tmp_path / "logs"), "T": "32", "TRUNC_T": "8", "BATCH_SIZE": "2", "NUM_WORKERS": "0", **changes}
    result = subprocess.run(["bash", "3_train_finetune_template.sh"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.stdout == ""
    assert_one_line_refusal(result.returncode, result.stderr, "training/train.py", expected)
    assert not list(tmp_path.rglob("*"))
