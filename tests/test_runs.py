"""Starting, resuming, re-running (README): one run per checkpoint folder, and re-runs that never lose work."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from embed_conditioned_policy import SteveAgentPolicy
from training import evaluate_offline, train
from training.run_lock import RunLock
from training_helpers import (
    REPO_ROOT,
    assert_weights_identical,
    sampling,  # noqa: F401 - fixtures
    uninterrupted,  # noqa: F401
    scalars,
    text_log,
    train_argv,
    tree_state,
)
from vpt_model.config import preset
from vpt_model.model_files import save_policy_weights


def refusal(capsys, argv: list[str]) -> str:
    """Run train.py expecting a refusal: exit status 2 and one line on stderr (returned)."""
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def finished(sampling, tmp_path_factory) -> Path:
    """A run that reached its budget: 96 frames = 3 steps of 32; batches end every 2 steps, so at step 3 inside one."""
    run = tmp_path_factory.mktemp("finished")
    torch.manual_seed(0)
    save_policy_weights(SteveAgentPolicy(preset("tiny")), run / "init.weights")
    assert train.main(train_argv(sampling, run, n_frames=96, save_freq=2, in_weights=str(run / "init.weights"))) == 0
    return run


def finished_argv(sampling: Path, run: Path, **overrides) -> list[str]:
    return train_argv(sampling, run, n_frames=96, save_freq=2, in_weights=str(run / "init.weights"), **overrides)


def test_a_run_stops_exactly_at_its_budget(finished):
    assert sorted(p.name for p in (finished / "ckpt").glob("ckpt_*.pt")) == ["ckpt_step000000002.pt", "ckpt_step000000003.pt"]
    frames = scalars(finished / "ckpt" / "logs", "processed_frames")
    assert frames[-1] == (2, 64.0)  # logged every 2 steps; no step past the budget of 3 was taken
    assert [step for step, _ in scalars(finished / "ckpt" / "logs", "loss/val")] == [0, 3]  # the start and the end
    assert "Done: step 3, 96 frames" in text_log(finished)


def test_re_running_a_finished_run_says_so_and_writes_nothing(sampling, finished, capsys):
    before = tree_state(finished)
    assert train.main(finished_argv(sampling, finished)) == 0
    out = capsys.readouterr().out
    assert "This run is finished: step 3 (96 frames)" in out and "toy_best.weights (best validation loss" in out
    assert train.main(finished_argv(sampling, finished, check_only=True)) == 0
    assert tree_state(finished) == before  # no checkpoint, export, TensorBoard event or log line more


def test_another_run_in_the_same_folder_is_refused_before_any_work(sampling, finished, capsys, tmp_path):
    before = tree_state(finished)
    err = refusal(capsys, finished_argv(sampling, finished, learning_rate=1e-3))
    assert re.fullmatch(r"training/train.py: --checkpoint_dir \S+/ckpt: holds another run \(--learning_rate 0.003 in the "
                        r"checkpoint, 0.001 now\); add --fresh to start over \(the old run moves to \S+/ckpt/previous_<time>/\), "
                        r"or choose another --checkpoint_dir \(CHECKPOINT_DIR in the scripts\)", err), err
    other_start = tmp_path / "other.weights"
    save_policy_weights(SteveAgentPolicy(preset("tiny")), other_start)  # another initialisation: other content
    err = refusal(capsys, train_argv(sampling, finished, n_frames=96, save_freq=2, in_weights=str(other_start),
                                     T=64))
    assert "--T 32 in the checkpoint, 64 now" in err and f"--in_weights {finished / 'init.weights'} (sha256" in err
    assert refusal(capsys, finished_argv(sampling, finished, learning_rate=1e-3, check_only=True)).startswith(
        "training/train.py: --checkpoint_dir")
    assert tree_state(finished) == before
    # settings that do not change the run are fine: a higher --max_steps than the budget, other workers
    assert train.main(finished_argv(sampling, finished, num_workers=1, max_steps=4)) == 0
    assert "finished" in capsys.readouterr().out


def test_a_checkpoint_of_an_earlier_toolkit_version_is_refused_not_resumed_blindly(sampling, tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    old = {"model": {}, "optimizer": {}, "rng": {}, "config": "{}",
           "progress": {"step": 16, "micro_step": 32, "frames": 512, "epoch": 0, "samples_in_epoch": 32}}
    torch.save(old, tmp_path / "ckpt" / "ckpt_step000000016.pt")
    err = refusal(capsys, train_argv(sampling, tmp_path, max_steps=2, check_only=True))
    assert "holds ckpt_step000000016.pt, written by an earlier toolkit version that did not record its run" in err
    assert "add --fresh to start over" in err


def test_fresh_moves_everything_of_the_previous_run_aside(sampling, tmp_path):
    first = train_argv(sampling, tmp_path, max_steps=2, save_freq=2, snapshot_every_n_frames=32)
    assert train.main(first) == 0
    old = tree_state(tmp_path)
    assert train.main(train_argv(sampling, tmp_path, max_steps=2, learning_rate=1e-3, fresh=True)) == 0
    previous = [p for p in (tmp_path / "ckpt").iterdir() if p.name.startswith("previous_")]
    assert len(previous) == 1
    moved = sorted(str(p.relative_to(previous[0])) for p in previous[0].rglob("*") if p.is_file())
    assert {"ckpt_step000000002.pt", "toy_latest.weights", "toy_best.weights", "toy_best.json", "toy_owner.json",
            "toy_snapshot_32.weights", "toy_snapshot_64.weights"} <= set(moved)
    assert any(name.startswith("logs/events.out.tfevents") for name in moved)
    # nothing was lost: every file of the first run is there, byte for byte
    for name, (size, _, digest) in old.items():
        if name.startswith("ckpt/") and not name.startswith("ckpt/run.lock"):
            relative = name.removeprefix("ckpt/")
        elif name.startswith("weights/"):
            relative = name.removeprefix("weights/")
        else:
            continue  # the text log is a diary of every run: it goes on
        assert tree_state(previous[0])[relative][::2] == (size, digest), name
    # the new run's TensorBoard holds the new run only: one step-0 validation, steps up to 2
    assert [step for step, _ in scalars(tmp_path / "ckpt" / "logs", "loss/val")] == [0, 2]
    assert not list((tmp_path / "weights").glob("toy_snapshot_*"))


def test_exported_weights_of_another_folders_run_are_refused_and_never_overwritten(sampling, tmp_path, capsys):
    weights_dir = tmp_path / "weights"
    first = tmp_path / "first"
    assert train.main(train_argv(sampling, first, max_steps=2, out_weights=str(weights_dir / "toy.weights"))) == 0
    capsys.readouterr()
    owner = json.loads((weights_dir / "toy_owner.json").read_text())
    assert owner["checkpoint_dir"] == str((first / "ckpt").resolve())
    before = tree_state(tmp_path)
    second = train_argv(sampling, tmp_path / "second", max_steps=2, out_weights=str(weights_dir / "toy.weights"))
    for extra in ([], ["--fresh"], ["--check_only"]):  # --fresh would move the first run's files: refused too
        err = refusal(capsys, second + extra)
        assert err == (f"training/train.py: --out_weights {weights_dir / 'toy.weights'}: its exported files "
                       "(toy_latest.weights, toy_best.weights, toy_best.json, toy_owner.json) belong to the run in "
                       f"CHECKPOINT_DIR {first / 'ckpt'}; choose another --out_weights (OUT_WEIGHTS in the scripts), or "
                       f"continue that run with --checkpoint_dir {first / 'ckpt'} (CHECKPOINT_DIR in the scripts)"), extra
        assert tree_state(tmp_path) == before
    # the owner's folder deleted by hand: still refused (the files are someone's work), with the way out
    shutil.move(first / "ckpt", tmp_path / "moved_ckpt")
    assert refusal(capsys, second).endswith("choose another --out_weights (OUT_WEIGHTS in the scripts), or, as that "
                                            "folder is gone, move these files away first")
    shutil.move(tmp_path / "moved_ckpt", first / "ckpt")
    # the owner itself goes on; a run with another OUT_WEIGHTS claims its own
    assert train.main(train_argv(sampling, first, max_steps=4, out_weights=str(weights_dir / "toy.weights"))) == 0
    assert train.main(train_argv(sampling, tmp_path / "second", max_steps=2, out_weights=str(weights_dir / "b.weights"))) == 0
    assert json.loads((weights_dir / "b_owner.json").read_text())["checkpoint_dir"] == str((tmp_path / "second" / "ckpt").resolve())


def test_a_folder_where_no_checkpoint_loads_is_refused_not_restarted(sampling, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "ckpt_step000000004.pt").write_bytes(b"torn")
    (ckpt / "ckpt_step000000006.pt").write_bytes(b"")
    before = tree_state(tmp_path)
    for extra in ([], ["--check_only"]):
        assert refusal(capsys, train_argv(sampling, tmp_path, max_steps=2) + extra) == (
            f"training/train.py: --checkpoint_dir {ckpt}: none of its checkpoints loads (ckpt_step000000006.pt, "
            f"ckpt_step000000004.pt); restore them (e.g. from a backup), or add --fresh to start over (they move to "
            f"{ckpt}/previous_<time>/)")
        assert tree_state(tmp_path) == before
    assert train.main(train_argv(sampling, tmp_path, max_steps=2, fresh=True)) == 0
    previous = next(ckpt.glob("previous_*"))
    assert (previous / "ckpt_step000000004.pt").read_bytes() == b"torn" and (previous / "ckpt_step000000006.pt").is_file()


def test_a_locked_folder_is_refused_and_a_dead_holders_lock_is_taken_over(sampling, tmp_path, capsys):
    argv = train_argv(sampling, tmp_path, max_steps=2)
    with RunLock(tmp_path / "ckpt") as lock:
        lock.acquire()
        before = tree_state(tmp_path)
        err = refusal(capsys, argv)
        assert f"--checkpoint_dir {tmp_path / 'ckpt'}: is in use by another run: pid {os.getpid()} on host " in err
        assert "wait until it ends, or choose another --checkpoint_dir" in err
        assert tree_state(tmp_path) == before
    # A holder killed with SIGKILL: the OS releases its lock; the file still names it.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from training.run_lock import RunLock; "
                               f"RunLock({str(tmp_path / 'ckpt')!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert "is in use by another run: pid" in refusal(capsys, argv)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert train.main(argv) == 0
    assert f"The lock of pid {holder.pid} on host" in text_log(tmp_path) and "was taken over" in text_log(tmp_path)
    assert (tmp_path / "ckpt" / "run.lock").read_text() == ""  # released at the end


@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
def test_unreadable_checkpoints_with_higher_numbers_never_cost_readable_ones(sampling, uninterrupted, tmp_path):
    run = tmp_path / "run"
    assert train.main(train_argv(sampling, run, max_steps=4, save_freq=2)) == 0
    ckpt = run / "ckpt"
    good = (ckpt / "ckpt_step000000004.pt").read_bytes()
    (ckpt / "ckpt_step000000010.pt").write_bytes(good[: len(good) // 2])  # what an interrupted copy leaves
    (ckpt / "ckpt_step000000012.pt").write_bytes(b"")
    (ckpt / ".ckpt_step000000006.pt.dead1.tmp").write_bytes(good[:100])  # temporary files of killed writers
    (run / "weights" / ".toy_latest.weights.dead2.tmp").write_bytes(b"x")
    assert train.main(train_argv(sampling, run, max_steps=8, save_freq=2)) == 0
    log = text_log(run)
    assert "Checkpoints that do not load moved to" in log and "ckpt_step000000012.pt, ckpt_step000000010.pt" in log
    assert "Resuming from" in log and "ckpt_step000000004.pt: step 4" in log
    assert "dead1.tmp (a temporary file of a killed writer)" in log and "dead2.tmp (a temporary file" in log
    assert sorted(p.name for p in ckpt.glob("ckpt_*.pt")) == ["ckpt_step000000006.pt", "ckpt_step000000008.pt"]
    assert sorted(p.name for p in (ckpt / "unreadable").iterdir()) == ["ckpt_step000000010.pt", "ckpt_step000000012.pt"]
    assert not list(ckpt.glob(".*.tmp")) and not list((run / "weights").glob(".*.tmp"))
    assert_weights_identical(uninterrupted, run / "weights" / "toy_latest.weights")


@pytest.fixture(scope="module")
def broken_sampling(sampling, tmp_path_factory) -> Path:
    """The toy sampling with training episode ep1's frames.mp4 cut in half after the sampling was made."""
    root = tmp_path_factory.mktemp("broken")
    shutil.copytree(sampling.parent / "episodes", root / "episodes")
    video = root / "episodes" / "ep1" / "frames.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    (root / "samplings").mkdir()
    for split in ("train", "val"):
        text = (sampling / f"toy_{split}.txt").read_text().replace(str(sampling.parent / "episodes"), str(root / "episodes"))
        (root / "samplings" / f"toy_{split}.txt").write_text(text)
    return root / "samplings"


def test_a_bad_episode_mid_run_is_skipped_named_and_counted(broken_sampling, tmp_path):
    # batch 4 of 12 samples: 3 batches = 6 optimizer steps read every sample once, the 3 of ep1 too
    assert train.main(train_argv(broken_sampling, tmp_path, batch_size=4, max_steps=6, log_freq=6,
                                 max_bad_sample_fraction=0.5)) == 0
    log = text_log(tmp_path)
    skipped = re.findall(r"Training sample skipped \(unreadable\): (\S+) frames (\d+)\.\.\d+: VideoError", log)
    assert sorted(int(start) for _, start in skipped) == [15, 47, 48]
    assert {path for path, _ in skipped} == {str(broken_sampling.parent / "episodes" / "ep1")}
    assert scalars(tmp_path / "ckpt" / "logs", "data/skipped_samples") == [(6, 3.0)]


def test_too_many_bad_samples_stop_the_run_with_a_clear_line(broken_sampling, tmp_path, capsys):
    code = train.main(train_argv(broken_sampling, tmp_path, batch_size=4, max_steps=6))  # default fraction 0.05
    assert code == 1
    out = capsys.readouterr().out
    assert re.search(r"\d of \d+ training samples could not be read \(more than --max_bad_sample_fraction 0.05\): "
                     r"stopping without saving\. Check the episodes named above", out)
    assert not list((tmp_path / "ckpt").glob("ckpt_*.pt"))


def test_train_and_evaluate_offline_compute_the_same_validation_loss(sampling, finished, capsys, tmp_path):
    # The finished run validated its final weights (= _latest) at step 3; evaluate_offline on them must agree.
    capsys.readouterr()
    assert evaluate_offline.main(["--in_model", "tiny", "--weights", str(finished / "weights" / "toy_latest.weights"),
                                  "--sampling", "toy", "--sampling_dir", str(sampling), "--T", "32", "--trunc_t", "8",
                                  "--val_every_nth", "2", "--batch_size", "2", "--cpu", "--plot_dir",
                                  str(tmp_path / "plots")]) == 0
    # --plot_dir alone (no --tensorboard_dir): the evaluated weights are drawn, there are no curves to draw
    assert (tmp_path / "plots" / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "plots" / "training_curves.png").exists()
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(str(finished)))
    loss, loss_uncond = (float(x) for x in row.split()[1:3])
    tensorboard = finished / "ckpt" / "logs"
    assert loss == pytest.approx(scalars(tensorboard, "loss/val")[-1][1], abs=1e-4)
    assert loss_uncond == pytest.approx(scalars(tensorboard, "loss/val_uncond")[-1][1], abs=1e-4)
    assert loss != pytest.approx(loss_uncond, abs=1e-4)  # zero goals are another measurement


def test_the_owner_file_is_created_whole_and_never_replaced(tmp_path):
    from toolkit_utils.atomic_files import create_new_file
    from training.checkpointing import claim_exports

    assert create_new_file(tmp_path / "a" / "x.json", b"first") is True
    assert create_new_file(tmp_path / "a" / "x.json", b"second") is False
    assert (tmp_path / "a" / "x.json").read_bytes() == b"first" and os.listdir(tmp_path / "a") == ["x.json"]
    out = str(tmp_path / "w" / "toy.weights")
    assert claim_exports(out, tmp_path / "one", "hash1") is None
    assert claim_exports(out, tmp_path / "one" / ".." / "one", "hash1") is None  # the same folder, spelled otherwise
    assert claim_exports(out, tmp_path / "two", "hash2") == str((tmp_path / "one").resolve())
    assert json.loads((tmp_path / "w" / "toy_owner.json").read_text())["settings_hash"] == "hash1"
