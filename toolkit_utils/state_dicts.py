"""Reading and strictly checking state dicts: every key matched by name, every mismatch named."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from toolkit_utils.safe_load import load_tensors_only


class StateDictMismatchError(ValueError):
    """A weights file does not fit the model; the message lists every offending key."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state dict (name -> tensor) from a file, without running code from it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        obj = load_tensors_only(path)
    except Exception as e:
        raise ValueError(f"{path}: not a readable weights file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a plain state dict (name -> tensor), got {type(obj).__name__}")
    return dict(obj)


def check_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, allow_missing: tuple[str, ...] = (), hint: str = ""
) -> list[str]:
    """Raise StateDictMismatchError unless keys and shapes match exactly; returns the allowed missing keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    tolerated = [k for k in missing if k in allow_missing]
    missing = [k for k in missing if k not in allow_missing]
    if missing or unexpected or wrong_shape:
        lines = [f"{source} does not match {type(model).__name__}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
        if wrong_shape:
            lines.append(f"  shape mismatches ({len(wrong_shape)}): " + "; ".join(wrong_shape))
        if hint:
            lines.append(f"  ({hint})")
        raise StateDictMismatchError("\n".join(lines))
    return tolerated
