"""Reading and strictly checking state dicts: every key matched by name, every mismatch named."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from toolkit_utils.safe_load import OpaqueObject, UnreadableWeightsError, load_tensors_only

COMPILED_MODULE_NAME = "_orig_mod"  # torch.compile's wrapper holds the compiled module under this name


class StateDictMismatchError(ValueError):
    """A weights file does not fit the model; the message lists every offending key."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state dict (name -> tensor) from a file, without running code from it.

    Raises FileNotFoundError, or UnreadableWeightsError (a ValueError) with one line naming the file and
    what it holds instead (empty, truncated, a web page, a pickle that would run code, a list ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    obj = load_tensors_only(path)
    if not isinstance(obj, Mapping):
        raise UnreadableWeightsError(f"{path}: holds {describe_value(obj)}, not a state dict (a dict of name -> tensor, as "
                                     "torch.save(model.state_dict()) writes)")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        shown = ", ".join(f"{k!r} ({describe_value(obj[k])})" for k in not_tensors[:4]) + (", ..." if len(not_tensors) > 4 else "")
        nested = [k for k in not_tensors if isinstance(obj[k], Mapping) and obj[k] and
                  all(isinstance(v, torch.Tensor) for v in obj[k].values())]
        hint = f"; a training checkpoint? its weights are under {nested[0]!r}" if nested else ""
        raise UnreadableWeightsError(f"{path}: a dict whose entries are not all tensors: {shown}{hint}")
    return dict(obj)


def describe_value(value: object) -> str:
    """What an unpickled value is, for messages: 'a list of 3 items', 'an int', 'builtins.exec(...), not run'."""
    if isinstance(value, OpaqueObject):
        return f"{value.qualified_name}(...), not run"
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    if isinstance(value, (list, tuple, dict)):
        return f"{article} {name} of {len(value)} item{'s' if len(value) != 1 else ''}"
    return f"{article} {name}"


def strip_key_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Keys without wrapper names: torch.compile's `_orig_mod.` wherever it stands, then any of `prefixes` at the
    start, repeatedly (e.g. `module._orig_mod.policy.net.x` -> `net.x` with prefixes ("module.", "policy.")).

    Raises StateDictMismatchError when two keys become one.
    """
    out = {}
    for original in state_dict:
        key = ".".join(part for part in original.split(".") if part != COMPILED_MODULE_NAME)
        while key.startswith(prefixes):
            key = key[len(next(p for p in prefixes if key.startswith(p))):]
        if key in out:
            raise StateDictMismatchError(f"key {key!r} appears twice after removing wrapper prefixes")
        out[key] = state_dict[original]
    return out


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
        prefix = _common_extra_prefix(missing, unexpected)
        if prefix and not wrong_shape:
            raise StateDictMismatchError(
                f"{source} does not match {type(model).__name__}: each of its {len(unexpected)} keys carries the prefix "
                f"{prefix!r} that the model's keys do not (a wrapper's name; save the unwrapped model's state_dict)"
            )
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


def _common_extra_prefix(missing: list[str], unexpected: list[str]) -> str | None:
    """The prefix p when the file's keys are exactly the model's keys with p in front (an unknown wrapper)."""
    if not missing or len(missing) != len(unexpected):
        return None
    first = next((u for u in unexpected if u.endswith("." + missing[0])), None)
    if first is None:
        return None
    prefix = first[: len(first) - len(missing[0])]
    return prefix if sorted(prefix + k for k in missing) == sorted(unexpected) else None
