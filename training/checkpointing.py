"""Resumable training checkpoints and the exported `.weights` files of one run.

A run's checkpoint folder holds `ckpt_stepNNNNNNNNN.pt` (written atomically; the newest `keep` loadable
ones kept), `logs/` (TensorBoard), `run.lock` (training/run_lock.py), and after trouble `unreadable/`
(checkpoints that do not load, moved aside) and `previous_<time>/` (an earlier run, moved aside by
--fresh). Nothing here deletes a checkpoint that loads unless `keep` newer loadable ones exist.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from toolkit_utils.atomic_files import atomic_torch_save, atomic_write_bytes, create_new_file
from training.metrics import MetricsLogger
from vpt_model.model_files import policy_state_dict, save_policy_weights

CHECKPOINT_PATTERN = re.compile(r"^ckpt_step(\d{9})\.pt$")
TEMPORARY_CHECKPOINT = re.compile(r"^\.ckpt_step\d{9}\.pt\..+\.tmp$")  # atomic_write_bytes' name while writing
TENSORBOARD_DIR = "logs"
UNREADABLE_DIR = "unreadable"


@dataclasses.dataclass
class TrainProgress:
    """Where training is: everything besides model and optimizer that a resume needs."""

    step: int = 0  # optimizer steps
    frames: int = 0  # frames trained on, all processes together (drives the LR schedule)
    epoch: int = 0  # the sampler's data position (ShardedEpochSampler.position_after) ...
    samples_in_epoch: int = 0  # ... in samples of all processes together
    best_val_loss: float = math.inf
    best_val_step: int = -1
    snapshots_written: int = 0
    samples_read: int = 0  # training samples drawn, all processes together
    samples_skipped: int = 0  # of those, unreadable ones left out of the loss

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint file that loaded: what the run was and where it stood."""

    path: Path
    progress: TrainProgress
    identity: dict[str, Any]
    config: dict[str, Any]


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_of(path: Path) -> int:
    """The optimizer step in a checkpoint's file name."""
    return int(CHECKPOINT_PATTERN.match(path.name).group(1))


def _unique(path: Path) -> Path:
    """`path`, or `path` with `_2`, `_3`... appended when something already has its name."""
    candidate, n = path, 2
    while candidate.exists():
        candidate, n = path.with_name(f"{path.name}_{n}"), n + 1
    return candidate


class CheckpointManager:
    """The `ckpt_stepNNNNNNNNN.pt` files of one folder: written atomically, the newest `keep` loadable kept."""

    def __init__(self, directory: str | os.PathLike, keep: int = 2) -> None:
        if keep < 2:
            raise ValueError("keep at least 2 checkpoints: the newest may be half written when a node dies")
        self.directory = Path(directory)
        self.keep = keep

    def checkpoints(self) -> list[Path]:
        """Checkpoint files by name, oldest first (whether they load is not checked)."""
        if not self.directory.is_dir():
            return []
        return sorted((p for p in self.directory.iterdir() if CHECKPOINT_PATTERN.match(p.name)), key=step_of)

    @staticmethod
    def load_summary(path: Path) -> Checkpoint:
        """Read a checkpoint's progress, identity and settings without loading its tensors (memory-mapped).

        Raises whatever torch.load raises for a torn or foreign file. A checkpoint of an earlier toolkit
        version loads with an empty identity.
        """
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        known = {f.name for f in dataclasses.fields(TrainProgress)}
        progress = TrainProgress(**{k: v for k, v in raw["progress"].items() if k in known})
        return Checkpoint(path, progress, json.loads(raw.get("identity", "{}")), json.loads(raw["config"]))

    def newest_loadable(self) -> tuple[Checkpoint | None, list[Path]]:
        """The newest checkpoint that loads, and the unreadable ones with higher numbers (newest first)."""
        unreadable = []
        for path in reversed(self.checkpoints()):
            try:
                return self.load_summary(path), unreadable
            except Exception:  # torn by a crash or an interrupted copy, truncated, not ours: never resumed from
                unreadable.append(path)
        return None, unreadable

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, progress: TrainProgress,
             config: dict[str, Any], identity: dict[str, Any]) -> tuple[Path, list[str]]:
        """Write `ckpt_step<progress.step>.pt`, then prune; returns its path and lines about what pruning did."""
        path = self.directory / f"ckpt_step{progress.step:09d}.pt"
        atomic_torch_save(
            {
                "model": policy_state_dict(model),
                "optimizer": optimizer.state_dict(),
                "progress": progress.to_dict(),
                "rng": _rng_state(),
                "config": json.dumps(config, sort_keys=True, default=str),
                "identity": json.dumps(identity, sort_keys=True),
            },
            path,
        )
        return path, self.prune()

    def prune(self) -> list[str]:
        """Keep the newest `keep` checkpoints that load; delete older loadable ones; move unreadable ones aside."""
        notes, kept = [], 0
        for path in reversed(self.checkpoints()):
            try:
                self.load_summary(path)
            except Exception:
                notes.append(f"{path} does not load: moved to {self.move_aside([path])}")
                continue
            kept += 1
            if kept > self.keep:
                path.unlink()
        return notes

    def move_aside(self, paths: list[Path]) -> Path:
        """Move unreadable checkpoints to `<dir>/unreadable/` (never deleted: a person may want to look)."""
        target = self.directory / UNREADABLE_DIR
        target.mkdir(exist_ok=True)
        for path in paths:
            shutil.move(str(path), _unique(target / path.name))
        return target

    def remove_temporary_files(self) -> list[Path]:
        """Delete the half-written checkpoints that killed writers left (only call while holding the run lock)."""
        if not self.directory.is_dir():
            return []
        leftovers = [p for p in self.directory.iterdir() if TEMPORARY_CHECKPOINT.match(p.name)]
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    @staticmethod
    def restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrainProgress:
        """Load model, optimizer and RNG state from a checkpoint (fully read: no file-backed optimizer state)."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint["model"], strict=True)
        optimizer.load_state_dict(checkpoint["optimizer"])
        _set_rng_state(checkpoint["rng"])
        return TrainProgress(**checkpoint["progress"])


def weights_paths(out_weights: str | os.PathLike) -> dict[str, Path]:
    """`<out>_latest.weights`, `<out>_best.weights`, `<out>_best.json` and `<out>_owner.json` next to --out_weights."""
    out = Path(out_weights)
    stem = out.name[: -len(".weights")] if out.name.endswith(".weights") else out.name
    return {
        "latest": out.with_name(f"{stem}_latest.weights"),
        "best": out.with_name(f"{stem}_best.weights"),
        "best_json": out.with_name(f"{stem}_best.json"),
        "owner": out.with_name(f"{stem}_owner.json"),
        "stem": out.with_name(stem),
    }


def exported_files(out_weights: str | os.PathLike) -> list[Path]:
    """The files a run exports next to --out_weights that exist now (latest, best, its json, the owner file, snapshots)."""
    paths = weights_paths(out_weights)
    fixed = [paths[key] for key in ("latest", "best", "best_json", "owner")]
    snapshots = sorted(paths["stem"].parent.glob(f"{paths['stem'].name}_snapshot_*.weights"))
    return [p for p in fixed if p.exists()] + snapshots


def remove_temporary_exports(out_weights: str | os.PathLike) -> list[Path]:
    """Delete half-written exports of this run that killed writers left (only while holding the run lock)."""
    stem = weights_paths(out_weights)["stem"]
    if not stem.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(stem.name)}_(latest\.weights|best\.weights|best\.json|owner\.json|snapshot_.+\.weights)\..+\.tmp$")
    leftovers = [p for p in stem.parent.iterdir() if pattern.match(p.name)]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def exports_owner(out_weights: str | os.PathLike) -> str | None:
    """The checkpoint folder of the run that owns the exports next to --out_weights (absolute), or None: unclaimed.

    Raises ValueError when the owner file exists but is not one this toolkit wrote.
    """
    path = weights_paths(out_weights)["owner"]
    try:
        owner = json.loads(path.read_text())["checkpoint_dir"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(owner, str):
        raise ValueError(f"{path} names no checkpoint folder")
    return owner


def same_folder(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two spellings name one folder (relative, absolute, through symbolic links)."""
    return Path(a).resolve() == Path(b).resolve()


def claim_exports(out_weights: str | os.PathLike, checkpoint_dir: str | os.PathLike, settings_hash: str) -> str | None:
    """Make the run in `checkpoint_dir` the owner of the exports next to --out_weights (main process, under the run lock).

    Returns None when it owns them now, or the other owner's folder when another run claimed them first. The file
    appears whole or not at all and is never replaced (toolkit_utils.atomic_files.create_new_file), so two runs that
    start together cannot both claim it.
    """
    path = weights_paths(out_weights)["owner"]
    owner = exports_owner(out_weights)
    if owner is not None:
        return None if same_folder(owner, checkpoint_dir) else owner
    record = {"checkpoint_dir": str(Path(checkpoint_dir).resolve()), "settings_hash": settings_hash,
              "claimed": f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}",
              "what": "the run in checkpoint_dir writes the _latest, _best and _snapshot files beside this file"}
    create_new_file(path, json.dumps(record, indent=2).encode())  # False: another run was faster (read below)
    owner = exports_owner(out_weights)
    return None if owner is not None and same_folder(owner, checkpoint_dir) else owner


def move_previous_run(checkpoint_dir: str | os.PathLike, out_weights: str | os.PathLike) -> Path | None:
    """Move everything of an earlier run to `<checkpoint_dir>/previous_<time>/`; None when there was nothing.

    That is its checkpoints, unreadable checkpoints, TensorBoard folder and its exports next to --out_weights
    (`_latest`, `_best`, `_best.json`, `_owner.json`, snapshots). Nothing is deleted.
    """
    checkpoint_dir = Path(checkpoint_dir)
    manager = CheckpointManager(checkpoint_dir)
    moving = manager.checkpoints() + [checkpoint_dir / d for d in (TENSORBOARD_DIR, UNREADABLE_DIR)
                                      if (checkpoint_dir / d).exists()]
    moving += exported_files(out_weights)
    if not moving:
        return None
    target = _unique(checkpoint_dir / f"previous_{datetime.datetime.now():%Y%m%d-%H%M%S}")
    target.mkdir(parents=True)
    for path in moving:
        shutil.move(str(path), target / path.name)
    return target


def save_resumable(checkpoints: CheckpointManager, policy: nn.Module, optimizer: torch.optim.Optimizer,
                   progress: TrainProgress, config: dict[str, Any], identity: dict[str, Any], out_weights: str,
                   log: MetricsLogger) -> None:
    """The main process's saving: the resumable checkpoint (then pruning) and `<out>_latest.weights`."""
    path, notes = checkpoints.save(policy, optimizer, progress, config, identity)
    save_policy_weights(policy, weights_paths(out_weights)["latest"])
    for note in notes:
        log.info(note)


def frames_label(frames: int) -> str:
    """5_000_000 -> '5M', 2_500_000 -> '2.5M', 20_000 -> '20K' (snapshot names)."""
    if frames >= 1_000_000:
        return f"{frames / 1_000_000:g}M"
    if frames >= 1_000:
        return f"{frames / 1_000:g}K"
    return str(frames)


def export_best(model: nn.Module, out_weights: str | os.PathLike, val_loss: float, progress: TrainProgress) -> None:
    """Write `<out>_best.weights` and its json (val loss, step, frames)."""
    paths = weights_paths(out_weights)
    save_policy_weights(model, paths["best"])
    info = {"best_val_loss": val_loss, "step": progress.step, "processed_frames": progress.frames}
    atomic_write_bytes(paths["best_json"], json.dumps(info, indent=2).encode())


def export_snapshot_if_due(model: nn.Module, progress: TrainProgress, out_weights: str | os.PathLike,
                           every_n_frames: int, is_main: bool, log: MetricsLogger) -> None:
    """`<out>_snapshot_<N>.weights` when progress.frames has passed the next multiple N of `every_n_frames` (0: never)."""
    threshold = (progress.snapshots_written + 1) * every_n_frames
    if not every_n_frames or progress.frames < threshold:
        return
    if is_main:
        path = Path(f"{weights_paths(out_weights)['stem']}_snapshot_{frames_label(threshold)}.weights")
        save_policy_weights(model, path)
        log.info(f"Snapshot at {progress.frames:,} frames: {path}")
    progress.snapshots_written += 1
