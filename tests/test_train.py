"""training/train.py end to end on CPU with the tiny policy: learning, resume, kills, exports, logs, freezing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from embed_conditioned_policy import SteveAgentPolicy
from episode_factory import make_learnable_sampling
from training import train
from training.checkpointing import frames_label
from vpt_model.config import preset
from vpt_model.model_files import load_policy_weights, save_policy_weights
from toolkit_utils.state_dicts import read_state_dict

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sampling(tmp_path_factory) -> Path:
    """4 training and 2 validation episodes of 80 frames; returns the sampling directory (name 'toy')."""
    return make_learnable_sampling(tmp_path_factory.mktemp("toy"))


def _args(sampling_dir: Path, run: Path, **overrides) -> list[str]:
    settings = {
        "in_model": "tiny", "sampling": "toy", "sampling_dir": str(sampling_dir), "T": 32, "trunc_t": 8,
        "batch_size": 2, "gradient_accumulation_steps": 2, "learning_rate": 3e-3, "warmup_frames": 64,
        "n_frames": 4096, "num_workers": 0, "log_freq": 2, "val_freq": 4, "val_freq_begin": 2,
        "val_freq_switch_steps": 4, "save_freq": 4, "snapshot_every_n_frames": 512, "p_uncond": 0.0,
        "checkpoint_dir": str(run / "ckpt"), "out_weights": str(run / "weights" / "toy.weights"),
        "log_dir": str(run / "logs"), "seed": 3,
    }
    settings.update(overrides)
    args = ["--cpu"]
    for key, value in settings.items():
        if value is True:
            args.append(f"--{key}")
        elif value is not None and value is not False:
            args += [f"--{key}", str(value)]
    return args


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(path)


def test_loss_falls_and_files_logs_and_exports_appear(sampling, tmp_path):
    assert train.main(_args(sampling, tmp_path, n_frames=768, learning_rate=1e-2, warmup_frames=128, val_freq=8,
                            val_freq_begin=8, val_freq_switch_steps=0, snapshot_every_n_frames=256)) == 0
    weights = tmp_path / "weights"
    best = json.loads((weights / "toy_best.json").read_text())
    log = next((tmp_path / "logs").glob("train_*.log")).read_text()
    val_losses = [float(line.split(": ")[1]) for line in log.splitlines() if line.startswith("Validation loss at step")]
    assert val_losses[0] > 1.3 * min(val_losses)  # it learned colour -> action
    assert best["best_val_loss"] == pytest.approx(min(val_losses), rel=1e-5)
    assert "Metrics for step 2:" in log and "\tgrad_l2_norm: " in log and "New best validation loss" in log
    # exports: plain state dicts that load strictly into a fresh policy
    total_frames = 768
    snapshots = sorted(p.name for p in weights.glob("toy_snapshot_*.weights"))
    assert set(snapshots) == {f"toy_snapshot_{frames_label(n)}.weights" for n in range(256, total_frames + 1, 256)}
    for name in ("toy_latest.weights", "toy_best.weights", snapshots[0]):
        fresh = SteveAgentPolicy(preset("tiny"))
        assert load_policy_weights(fresh, weights / name) == []
    # TensorBoard holds the documented tags
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "ckpt" / "logs"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/val", "learning_rate", "grad_l2_norm", "processed_frames", "throughput/frames_per_s"} <= tags
    lr = [e.value for e in events.Scalars("learning_rate")]
    assert lr[0] < max(lr) and lr[-1] < max(lr)  # warmup then decay


def test_resume_continues_exactly_like_an_uninterrupted_run(sampling, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main(_args(sampling, straight, max_steps=8, save_freq=100)) == 0
    assert train.main(_args(sampling, split, max_steps=4, save_freq=100)) == 0
    assert sorted(p.name for p in (split / "ckpt").glob("ckpt_*.pt")) == ["ckpt_step000000004.pt"]
    assert train.main(_args(sampling, split, max_steps=8, save_freq=100)) == 0
    a, b = _weights(straight / "weights" / "toy_latest.weights"), _weights(split / "weights" / "toy_latest.weights")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert not torch.equal(a["pi_head.buttons.linear_layer.bias"], SteveAgentPolicy(preset("tiny")).state_dict()["pi_head.buttons.linear_layer.bias"])


def test_kill_during_checkpoint_write_resumes_from_the_previous_checkpoint(sampling, tmp_path):
    reference = tmp_path / "reference"
    assert train.main(_args(sampling, reference, max_steps=6, save_freq=100)) == 0
    run = tmp_path / "killed"
    cmd = [sys.executable, str(REPO_ROOT / "training" / "train.py"), *_args(sampling, run, max_steps=6, save_freq=2)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "ckpt"
    deadline, killed_mid_write = time.time() + 120, False
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_dir() and len(list(ckpt.glob("ckpt_*.pt"))) >= 2:
            partial = list(ckpt.glob(".ckpt_*.tmp"))
            if partial:  # a checkpoint is being written right now
                os.kill(proc.pid, signal.SIGKILL)
                killed_mid_write = True
                break
        time.sleep(0.0005)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if not killed_mid_write:
        # the write window was missed: leave what a kill mid-write leaves, a partial temporary file
        newest = sorted(ckpt.glob("ckpt_*.pt"))[-1]
        (ckpt / f".{newest.name}.x.tmp").write_bytes(newest.read_bytes()[:100])
    complete = sorted(ckpt.glob("ckpt_*.pt"))
    assert complete, "no complete checkpoint was written before the kill"
    # a torn newest file (non-atomic storage) must not stop the resume either: the previous one is used
    torn = complete[-1]
    torn.write_bytes(torn.read_bytes()[:1000])
    assert train.main(_args(sampling, run, max_steps=6, save_freq=2)) == 0
    a, b = _weights(reference / "weights" / "toy_latest.weights"), _weights(run / "weights" / "toy_latest.weights")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_gradient_accumulation_steps_count_optimizer_steps(sampling, tmp_path):
    assert train.main(_args(sampling, tmp_path, max_steps=3, gradient_accumulation_steps=4, log_freq=1)) == 0
    log = next((tmp_path / "logs").glob("train_*.log")).read_text()
    # 4 windows of 8 frames x batch 2 per optimizer step
    assert "\tprocessed_frames: 64\n" in log and "\tprocessed_frames: 128\n" in log


def test_frozen_parts_do_not_change(sampling, tmp_path):
    start = SteveAgentPolicy(preset("tiny"))
    save_policy_weights(start, tmp_path / "start.weights")
    assert train.main(_args(sampling, tmp_path, max_steps=4, freeze="cnn,transformer",
                            in_weights=str(tmp_path / "start.weights"))) == 0
    before, after = start.state_dict(), _weights(tmp_path / "weights" / "toy_latest.weights")
    for key in before:
        if key.startswith(("net.img_process.", "net.recurrent_layer.", "value_head.")):
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["net.mineclip_embed_linear.weight"], after["net.mineclip_embed_linear.weight"])
    assert not torch.equal(before["pi_head.buttons.linear_layer.weight"], after["pi_head.buttons.linear_layer.weight"])
    log = next((tmp_path / "logs").glob("train_*.log")).read_text()
    assert "frozen    net.img_process" in log and "trainable net.mineclip_embed_linear" in log


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(sampling, tmp_path, capsys):
    start = SteveAgentPolicy(preset("tiny"))
    with torch.no_grad():
        start.pi_head.camera.linear_layer.bias[0] = float("nan")
    save_policy_weights(start, tmp_path / "nan.weights")
    assert train.main(_args(sampling, tmp_path, max_steps=4, in_weights=str(tmp_path / "nan.weights"))) == 1
    out = capsys.readouterr().out
    assert "Loss is nan at step 1: stopping without saving" in out
    assert not list((tmp_path / "ckpt").glob("ckpt_*.pt")) and not (tmp_path / "weights" / "toy_latest.weights").exists()


def test_vpt_weights_start_with_a_fresh_goal_layer(sampling, tmp_path, capsys):
    from vpt_model.policy import MinecraftAgentPolicy

    save_policy_weights(MinecraftAgentPolicy(preset("tiny")), tmp_path / "vpt.weights")
    assert train.main(_args(sampling, tmp_path, max_steps=2, in_weights=str(tmp_path / "vpt.weights"))) == 0
    assert "left at their initial values: net.mineclip_embed_linear.weight, net.mineclip_embed_linear.bias" in capsys.readouterr().out


def test_bad_settings_are_refused_before_any_work(sampling, tmp_path):
    with pytest.raises(SystemExit, match="--T 30 is not a multiple of --trunc_t 8"):
        train.main(_args(sampling, tmp_path, T=30))
    with pytest.raises(SystemExit, match="missing_train.txt not found: run 2_create_sampling.sh"):
        train.main(_args(sampling, tmp_path, sampling="missing"))
    with pytest.raises(SystemExit, match="--T 200 needs episodes of >= 215 frames"):
        train.main(_args(sampling, tmp_path, T=200))
    with pytest.raises(SystemExit):
        train.parse_args(["--mixed_precision", "fp8"])


def test_boolean_flags_are_real_flags():
    args = train.parse_args(["--augment", "--fresh"])
    assert args.augment is True and args.fresh is True and train.parse_args([]).augment is False
    with pytest.raises(SystemExit):
        train.parse_args(["--augment", "False"])  # no type=bool: a value is an error, not "True"


def _launch_two_processes(args: list[str]) -> None:
    """accelerate launch with 2 CPU processes (torch.distributed over gloo): what --num_processes 2 does on GPUs."""
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO_ROOT / "training" / "train.py"), *args]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _relative_gap(a: dict, b: dict, start: dict) -> float:
    """|a - b| / |a - start| over all weights: how far two runs drifted apart, relative to how far they moved."""
    gap = sum(((a[k] - b[k]) ** 2).sum() for k in a) ** 0.5
    moved = sum(((a[k] - start[k]) ** 2).sum() for k in a) ** 0.5
    return float(gap / moved)


def test_two_processes_equal_one_process_with_the_same_global_batch_and_resume_across_counts(sampling, tmp_path):
    # Adam turns float-rounding differences of near-zero gradients (all-reduce sums in another order) into
    # visible steps, so the runs are compared by how far apart they end relative to how far they moved:
    # measured 5e-4; mis-sharded data or unaveraged gradients give differences of order 1.
    torch.manual_seed(0)
    save_policy_weights(SteveAgentPolicy(preset("tiny")), tmp_path / "init.weights")
    start = _weights(tmp_path / "init.weights")
    one, two = tmp_path / "one", tmp_path / "two"
    common = {"in_weights": str(tmp_path / "init.weights"), "save_freq": 100}
    assert train.main(_args(sampling, one, max_steps=4, batch_size=2, **common)) == 0
    _launch_two_processes(_args(sampling, two, max_steps=4, batch_size=1, **common))
    a, b = _weights(one / "weights" / "toy_latest.weights"), _weights(two / "weights" / "toy_latest.weights")
    assert _relative_gap(a, b, start) < 1e-2
    log = next((two / "logs").glob("train_*.log")).read_text()
    assert "processes: 2" in log and "Done: step 4, 128 frames" in log  # metrics count both processes' frames
    one_log = next((one / "logs").glob("train_*.log")).read_text()
    losses = [[float(line.split(": ")[1]) for line in text.splitlines() if line.startswith("\tloss: ")] for text in (one_log, log)]
    assert len(losses[0]) == len(losses[1]) == 2 and np.allclose(losses[0], losses[1], rtol=1e-4)
    # the 2-process checkpoint resumes in 1 process (same global batch) and stays on the same trajectory
    assert train.main(_args(sampling, one, max_steps=8, batch_size=2, **common)) == 0
    assert train.main(_args(sampling, two, max_steps=8, batch_size=2, **common)) == 0
    a, b = _weights(one / "weights" / "toy_latest.weights"), _weights(two / "weights" / "toy_latest.weights")
    assert _relative_gap(a, b, start) < 1e-2
