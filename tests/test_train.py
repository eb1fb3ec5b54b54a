"""training/train.py end to end on CPU with the tiny policy: learning, exports, logs, resume, kills, freezing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from embed_conditioned_policy import SteveAgentPolicy
from training import train
from training.checkpointing import frames_label
from training_helpers import (
    REPO_ROOT,
    assert_weights_identical,
    sampling,  # noqa: F401 - fixtures
    uninterrupted,  # noqa: F401
    scalars,
    text_log,
    train_argv,
    weights,
)
from vpt_model.config import preset
from vpt_model.model_files import load_policy_weights, save_policy_weights

TAGS = {"loss/train", "loss/val", "loss/val_uncond", "learning_rate", "grad_l2_norm", "processed_frames",
        "throughput/frames_per_s", "data/skipped_samples"}


def test_loss_falls_and_files_logs_and_exports_appear(sampling, tmp_path):
    assert train.main(train_argv(sampling, tmp_path, n_frames=512, learning_rate=1e-2, warmup_frames=128, val_freq=8,
                                 val_freq_begin=8, val_freq_switch_steps=0, snapshot_every_n_frames=256, freeze="")) == 0
    tensorboard = tmp_path / "ckpt" / "logs"
    val = scalars(tensorboard, "loss/val")
    assert [step for step, _ in val] == [0, 8, 16]  # the start, every 8 steps (16 x 32 frames = 512: the end)
    assert val[0][1] > 1.3 * min(v for _, v in val)  # it learned colour -> action
    best = json.loads((tmp_path / "weights" / "toy_best.json").read_text())
    assert best["best_val_loss"] == pytest.approx(min(v for _, v in val), rel=1e-6)
    assert TAGS <= {tag for tag in TAGS if scalars(tensorboard, tag)}
    lr = [v for _, v in scalars(tensorboard, "learning_rate")]
    assert lr[0] < max(lr) and lr[-1] < max(lr)  # warmup then decay
    log = text_log(tmp_path)
    assert "Metrics for step 2:" in log and "\tgrad_l2_norm: " in log and "New best validation loss" in log
    assert "run started on" in log and "settings hash" in log and "run ended: finished at step 16" in log
    assert " --freeze ''" in log  # the command as typed: an empty value stays visible (FREEZE="" in the template)
    # exports: plain state dicts that load strictly into a fresh policy
    snapshots = sorted(p.name for p in (tmp_path / "weights").glob("toy_snapshot_*.weights"))
    assert set(snapshots) == {f"toy_snapshot_{frames_label(n)}.weights" for n in (256, 512)}
    for name in ("toy_latest.weights", "toy_best.weights", snapshots[0]):
        assert load_policy_weights(SteveAgentPolicy(preset("tiny")), tmp_path / "weights" / name) == []


def test_resume_is_bit_exact_and_logs_each_step_once(sampling, uninterrupted, tmp_path):
    # The first run logs steps 1-8 and writes checkpoints at 4 and 8; deleting the one at 8 leaves what a kill
    # just before it leaves: TensorBoard events past the newest checkpoint. The resume logs steps 5-8 again.
    assert train.main(train_argv(sampling, tmp_path, max_steps=8, save_freq=4)) == 0
    (tmp_path / "ckpt" / "ckpt_step000000008.pt").unlink()
    assert train.main(train_argv(sampling, tmp_path, max_steps=8, save_freq=4, log_freq=1)) == 0
    assert_weights_identical(uninterrupted, tmp_path / "weights" / "toy_latest.weights")
    log = text_log(tmp_path)
    assert "Resuming from" in log and "ckpt_step000000004.pt: step 4" in log and "changed settings: log_freq 2 -> 1" in log
    for tag in ("loss/train", "loss/val", "processed_frames", "learning_rate"):
        steps = [step for step, _ in scalars(tmp_path / "ckpt" / "logs", tag)]
        assert steps == sorted(set(steps)), (tag, steps)  # monotone: no step twice
    assert [s for s, _ in scalars(tmp_path / "ckpt" / "logs", "processed_frames")] == [2, 4, 5, 6, 7, 8]


@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
def test_kill_during_checkpoint_write_resumes_bit_exactly(sampling, uninterrupted, tmp_path):
    run = tmp_path / "killed"
    cmd = [sys.executable, str(REPO_ROOT / "training" / "train.py"), *train_argv(sampling, run, max_steps=8, save_freq=2)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "ckpt"
    deadline, killed_mid_write = time.time() + 120, False
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_dir() and len(list(ckpt.glob("ckpt_*.pt"))) >= 2 and list(ckpt.glob(".ckpt_*.tmp")):
            os.kill(proc.pid, signal.SIGKILL)  # a checkpoint is being written right now
            killed_mid_write = True
            break
        time.sleep(0.0005)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    complete = sorted(ckpt.glob("ckpt_*.pt"))
    assert complete, "no complete checkpoint was written before the kill"
    if not killed_mid_write:  # the write window was missed: leave what a kill mid-write leaves
        (ckpt / f".{complete[-1].name}.x.tmp").write_bytes(complete[-1].read_bytes()[:100])
    # a torn newest file (storage without atomic renames) must not stop the resume either
    torn = complete[-1]
    torn.write_bytes(torn.read_bytes()[:1000])
    assert train.main(train_argv(sampling, run, max_steps=8, save_freq=2)) == 0
    assert_weights_identical(uninterrupted, run / "weights" / "toy_latest.weights")
    assert not list(ckpt.glob(".*.tmp"))  # temporary files of the dead writer were removed at the start
    assert (ckpt / "unreadable" / torn.name).is_file()  # the torn one moved aside, not deleted


@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
def test_sigterm_ends_the_run_with_a_log_line_and_status_143_and_it_resumes_bit_exactly(sampling, uninterrupted, tmp_path):
    run = tmp_path / "terminated"
    argv = train_argv(sampling, run, max_steps=8, save_freq=2)
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "training" / "train.py"), *argv], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list((run / "ckpt").glob("ckpt_*.pt")):
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be terminated"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in out + err
    ended = [line for line in text_log(run).splitlines() if " run ended" in line]
    assert len(ended) == 1 and re.search(r"run ended: SIGTERM \(terminated\) at step \d: stopped without saving; the same "
                                         r"command resumes from \S+ckpt_step\d{9}\.pt$", ended[0]), ended
    assert ended[0] in out  # on the console too
    assert (run / "ckpt" / "run.lock").read_text() == ""  # released
    assert train.main(argv) == 0
    assert_weights_identical(uninterrupted, run / "weights" / "toy_latest.weights")


def test_gradient_accumulation_steps_count_optimizer_steps(sampling, tmp_path):
    assert train.main(train_argv(sampling, tmp_path, max_steps=3, gradient_accumulation_steps=4, log_freq=1)) == 0
    # 4 windows of 8 frames x batch 2 per optimizer step; what TensorBoard holds, not only what the console said
    assert scalars(tmp_path / "ckpt" / "logs", "processed_frames") == [(1, 64.0), (2, 128.0), (3, 192.0)]


def test_frozen_parts_do_not_change(sampling, tmp_path):
    start = SteveAgentPolicy(preset("tiny"))
    save_policy_weights(start, tmp_path / "start.weights")
    assert train.main(train_argv(sampling, tmp_path, max_steps=4, freeze="cnn,transformer",
                                 in_weights=str(tmp_path / "start.weights"))) == 0
    before, after = start.state_dict(), weights(tmp_path / "weights" / "toy_latest.weights")
    for key in before:
        if key.startswith(("net.img_process.", "net.recurrent_layer.", "value_head.")):
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["net.mineclip_embed_linear.weight"], after["net.mineclip_embed_linear.weight"])
    assert not torch.equal(before["pi_head.buttons.linear_layer.weight"], after["pi_head.buttons.linear_layer.weight"])
    log = text_log(tmp_path)
    assert "frozen    net.img_process" in log and "trainable net.mineclip_embed_linear" in log


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(sampling, tmp_path, capsys):
    start = SteveAgentPolicy(preset("tiny"))
    with torch.no_grad():
        start.pi_head.camera.linear_layer.bias[0] = float("nan")
    save_policy_weights(start, tmp_path / "nan.weights")
    assert train.main(train_argv(sampling, tmp_path, max_steps=4, in_weights=str(tmp_path / "nan.weights"))) == 1
    assert "Loss is nan at step 1: stopping without saving" in capsys.readouterr().out
    assert not list((tmp_path / "ckpt").glob("ckpt_*.pt")) and not (tmp_path / "weights" / "toy_latest.weights").exists()
    assert "run ended: stopped: Loss is nan" in text_log(tmp_path)


def test_vpt_weights_start_with_a_fresh_goal_layer(sampling, tmp_path, capsys):
    from vpt_model.policy import MinecraftAgentPolicy

    save_policy_weights(MinecraftAgentPolicy(preset("tiny")), tmp_path / "vpt.weights")
    assert train.main(train_argv(sampling, tmp_path, max_steps=2, in_weights=str(tmp_path / "vpt.weights"))) == 0
    assert "left at their initial values: net.mineclip_embed_linear.weight, net.mineclip_embed_linear.bias" in capsys.readouterr().out


def test_an_error_that_ends_a_run_is_in_the_text_log(sampling, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train.BCStepper, "step", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        train.main(train_argv(sampling, tmp_path, max_steps=2))
    log = text_log(tmp_path)
    assert "run ended by an error: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in log
    assert "Traceback (most recent call last)" in log


def test_boolean_flags_are_real_flags_and_the_checkpoint_dir_follows_out_weights():
    args = train.parse_args(["--augment", "--fresh"])
    assert args.augment is True and args.fresh is True and train.parse_args([]).augment is False
    with pytest.raises(SystemExit):
        train.parse_args(["--augment", "False"])  # no type=bool: a value is an error, not "True"
    # a copied template with another OUT_WEIGHTS gets its own folder
    assert train.parse_args(["--out_weights", "w/task_b.weights"]).checkpoint_dir == "data/finetuning_checkpoint/task_b"
    assert train.parse_args(["--out_weights", "w/b.weights", "--checkpoint_dir", "x"]).checkpoint_dir == "x"


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


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_global_batch_and_resume_across_counts(sampling, tmp_path):
    # Adam turns float-rounding differences of near-zero gradients (all-reduce sums in another order) into
    # visible steps, so the runs are compared by how far apart they end relative to how far they moved:
    # measured 5e-4; mis-sharded data or unaveraged gradients give differences of order 1.
    torch.manual_seed(0)
    save_policy_weights(SteveAgentPolicy(preset("tiny")), tmp_path / "init.weights")
    start = weights(tmp_path / "init.weights")
    one, two = tmp_path / "one", tmp_path / "two"
    common = {"in_weights": str(tmp_path / "init.weights"), "save_freq": 100}
    assert train.main(train_argv(sampling, one, max_steps=4, batch_size=2, **common)) == 0
    _launch_two_processes(train_argv(sampling, two, max_steps=4, batch_size=1, **common))
    a, b = weights(one / "weights" / "toy_latest.weights"), weights(two / "weights" / "toy_latest.weights")
    assert _relative_gap(a, b, start) < 1e-2
    log = text_log(two)
    assert "processes: 2" in log and "Done: step 4, 128 frames" in log  # metrics count both processes' frames
    losses = [[v for _, v in scalars(run / "ckpt" / "logs", "loss/train")] for run in (one, two)]
    assert len(losses[0]) == len(losses[1]) == 2 and np.allclose(losses[0], losses[1], rtol=1e-4)
    # the 2-process checkpoint resumes in 1 process (the same global batch) and stays on the same trajectory
    assert train.main(train_argv(sampling, one, max_steps=8, batch_size=2, **common)) == 0
    assert train.main(train_argv(sampling, two, max_steps=8, batch_size=2, **common)) == 0
    assert "changed settings: max_steps 4 -> 8, batch_size 1 -> 2, processes 2 -> 1" in text_log(two)
    a, b = weights(one / "weights" / "toy_latest.weights"), weights(two / "weights" / "toy_latest.weights")
    assert _relative_gap(a, b, start) < 1e-2
