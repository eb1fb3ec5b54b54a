"""Test helper for training runs: the toy sampling, train.py arguments, TensorBoard scalars, folder snapshots."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from episode_factory import make_learnable_sampling
from toolkit_utils.state_dicts import read_state_dict

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sampling(tmp_path_factory) -> Path:
    """4 training and 2 validation learnable episodes of 80 frames; returns the sampling directory (name 'toy')."""
    return make_learnable_sampling(tmp_path_factory.mktemp("toy"))


def train_settings(sampling_dir: Path, run: Path, **overrides) -> dict:
    """train.py settings for a tiny CPU run in `run`: T 32 in windows of 8 (4 windows per sample), batch 2,
    accumulation 2, so an optimizer step is 32 frames and a batch ends every 2 steps."""
    settings = {
        "in_model": "tiny", "sampling": "toy", "sampling_dir": str(sampling_dir), "T": 32, "trunc_t": 8,
        "batch_size": 2, "gradient_accumulation_steps": 2, "learning_rate": 3e-3, "warmup_frames": 64,
        "n_frames": 4096, "num_workers": 0, "log_freq": 2, "val_freq": 4, "val_freq_begin": 4,
        "val_freq_switch_steps": 0, "save_freq": 4, "snapshot_every_n_frames": 512, "p_uncond": 0.0,
        "checkpoint_dir": str(run / "ckpt"), "out_weights": str(run / "weights" / "toy.weights"),
        "log_dir": str(run / "logs"), "seed": 3, "val_every_nth": 2,
    }
    settings.update(overrides)
    return settings


@pytest.fixture(scope="session")
def uninterrupted(sampling, tmp_path_factory) -> Path:
    """`_latest.weights` after 8 optimizer steps without a stop: stopped and resumed runs must equal it bit for bit."""
    from training import train

    run = tmp_path_factory.mktemp("uninterrupted")
    assert train.main(train_argv(sampling, run, max_steps=8, save_freq=100)) == 0
    return run / "weights" / "toy_latest.weights"


def train_argv(sampling_dir: Path, run: Path, **overrides) -> list[str]:
    """The command line of `train_settings` (True: a flag; None/False: left out)."""
    argv = ["--cpu"]
    for key, value in train_settings(sampling_dir, run, **overrides).items():
        if value is True:
            argv.append(f"--{key}")
        elif value is not None and value is not False:
            argv += [f"--{key}", str(value)]
    return argv


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(path)


def assert_weights_identical(a: Path, b: Path) -> None:
    """Bit for bit: the same tensors, not merely close ones."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def scalars(tensorboard_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of a TensorBoard tag as TensorBoard shows it (purged steps of resumed runs dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def text_log(run: Path) -> str:
    """The run's daily text log (all days, in order)."""
    return "".join(p.read_text() for p in sorted((run / "logs").glob("train_*.log")))


def tree_state(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root: (size, mtime_ns, sha256), to show that nothing was written."""
    state = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        state[str(path.relative_to(root))] = (path.stat().st_size, path.stat().st_mtime_ns,
                                              hashlib.sha256(path.read_bytes()).hexdigest())
    return state
