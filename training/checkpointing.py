"""Resumable training checkpoints (atomic, last k kept) and the exported `.weights` files."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from toolkit_utils.atomic_files import atomic_torch_save, atomic_write_bytes
from vpt_model.model_files import policy_state_dict, save_policy_weights

CHECKPOINT_PATTERN = re.compile(r"^ckpt_step(\d{9})\.pt$")


@dataclasses.dataclass
class TrainProgress:
    """Where training is: everything besides model and optimizer that a resume needs."""

    step: int = 0  # optimizer steps
    micro_step: int = 0  # truncated-BPTT windows processed (per process)
    frames: int = 0  # frames processed, all processes together (drives the LR schedule)
    epoch: int = 0
    samples_in_epoch: int = 0  # samples consumed in this epoch, all processes together
    best_val_loss: float = math.inf
    best_val_step: int = -1
    snapshots_written: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


class CheckpointManager:
    """`<dir>/ckpt_stepNNNNNNNNN.pt` files: written atomically, the newest `keep` kept."""

    def __init__(self, directory: str | os.PathLike, keep: int = 2) -> None:
        if keep < 2:
            raise ValueError("keep at least 2 checkpoints: the newest may be half written when a node dies")
        self.directory = Path(directory)
        self.keep = keep

    def checkpoints(self) -> list[Path]:
        """Complete checkpoint files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if CHECKPOINT_PATTERN.match(p.name)]
        return sorted(found, key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)))

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, progress: TrainProgress, config: dict) -> Path:
        path = self.directory / f"ckpt_step{progress.step:09d}.pt"
        atomic_torch_save(
            {
                "model": policy_state_dict(model),
                "optimizer": optimizer.state_dict(),
                "progress": progress.to_dict(),
                "rng": _rng_state(),
                "config": json.dumps(config, sort_keys=True, default=str),
            },
            path,
        )
        for old in self.checkpoints()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads; a broken newest one is reported and the previous used."""
        for path in reversed(self.checkpoints()):
            try:
                return path, torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # a torn file from a crash: fall back to the previous one
                print(f"[checkpoint] {path} is unreadable ({type(e).__name__}); trying the previous checkpoint")
        return None

    @staticmethod
    def restore(
        checkpoint: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> TrainProgress:
        model.load_state_dict(checkpoint["model"], strict=True)
        optimizer.load_state_dict(checkpoint["optimizer"])
        _set_rng_state(checkpoint["rng"])
        return TrainProgress(**checkpoint["progress"])


def weights_paths(out_weights: str | os.PathLike) -> dict[str, Path]:
    """`<out>_latest.weights`, `<out>_best.weights`, `<out>_best.json` next to --out_weights."""
    out = Path(out_weights)
    stem = out.name[: -len(".weights")] if out.name.endswith(".weights") else out.name
    return {
        "latest": out.with_name(f"{stem}_latest.weights"),
        "best": out.with_name(f"{stem}_best.weights"),
        "best_json": out.with_name(f"{stem}_best.json"),
        "stem": out.with_name(stem),
    }


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


def export_snapshot(model: nn.Module, out_weights: str | os.PathLike, threshold_frames: int) -> Path:
    path = Path(f"{weights_paths(out_weights)['stem']}_snapshot_{frames_label(threshold_frames)}.weights")
    save_policy_weights(model, path)
    return path
