"""Reading and writing the user's model files: `.model` (architecture) and `.weights` (state dict)."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from toolkit_utils.atomic_files import atomic_torch_save
from toolkit_utils.state_dicts import check_state_dict, read_state_dict, strip_key_prefixes
from vpt_model.config import PolicyConfig, preset

# Prefixes the original training code left on saved keys (DDP / its policy wrapper); torch.compile's
# `_orig_mod.` is removed as well, alone or combined with these.
WEIGHT_KEY_PREFIXES = ("module.", "policy.")


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, strings, numbers, bools and None; refuses every object import."""

    # numpy scalars (a temperature stored as np.float64, say) are rebuilt from bytes: no code runs
    _ALLOWED = {("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
                ("numpy._core.multiarray", "scalar"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        module = module.replace("numpy.core.", "numpy._core.")  # pickles written by numpy 1.x
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to build object {module}.{name}: a .model file holds only plain containers and numbers"
        )


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Safely read a VPT `.model` pickle -> (policy kwargs `net.args`, `pi_head_opts`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found (download it with download_weights.sh)")
    if zipfile.is_zipfile(path):  # torch.save writes zip archives; .model files are plain pickles
        raise ValueError(f"{path}: a torch.save file (weights?), not a VPT .model file: the architecture (.model) and "
                         "the weights (.weights) are separate files")
    try:
        data = _PlainDataUnpickler(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: {e}") from None
    except Exception as e:  # truncated or not a pickle at all
        raise ValueError(f"{path}: not a readable .model file ({type(e).__name__}: {e})") from None
    try:
        args = data["model"]["args"]
        net_args = args["net"]["args"]
    except (KeyError, TypeError):
        raise ValueError(f"{path}: expected {{'model': {{'args': {{'net': {{'args': ...}}}}}}}} in a .model file") from None
    if not isinstance(net_args, dict):
        raise ValueError(f"{path}: model.args.net.args is {type(net_args).__name__}, expected a dict")
    pi_head_opts = args.get("pi_head_opts") or {}
    return _plain(dict(net_args)), _plain(dict(pi_head_opts))


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, recursively (the rest of the code sees plain data)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def load_policy_config(model: str | os.PathLike) -> PolicyConfig:
    """A `.model` path or a preset name ('2x', '1x', '3x', 'tiny') -> PolicyConfig."""
    if str(model).endswith(".model") or Path(model).is_file():
        net_args, pi_head_opts = read_model_file(model)
        return PolicyConfig.from_policy_kwargs(net_args, pi_head_opts)
    return preset(str(model))


def load_policy_weights(
    model: nn.Module, path: str | os.PathLike, allow_missing: tuple[str, ...] = (), verbose: bool = True
) -> list[str]:
    """Load a `.weights` file strictly (after stripping wrapper prefixes); returns keys left at their init.

    Raises FileNotFoundError, ValueError (not a weights file: one line saying what it is) or
    StateDictMismatchError naming every missing, unexpected or mis-shaped key.
    """
    state_dict = strip_key_prefixes(read_state_dict(path), WEIGHT_KEY_PREFIXES)
    tolerated = check_state_dict(
        model, state_dict, str(path), allow_missing, hint="is the .model / --in_model the one these weights were trained with?"
    )
    model.load_state_dict(state_dict, strict=not tolerated)
    if tolerated and verbose:
        print(f"[weights] {path}: not in the file, left at their initial values: {', '.join(tolerated)}")
    return tolerated


def policy_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as plain contiguous CPU tensors, unwrapped from DDP / torch.compile."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or getattr(model, "_orig_mod")
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def save_policy_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Save like the original (`torch.save(state_dict)`, no prefixes), atomically."""
    atomic_torch_save(policy_state_dict(model), path)

