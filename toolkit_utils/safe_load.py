"""torch.load that never runs code from the file, yet reads checkpoints that carry foreign metadata objects."""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

_UNSUPPORTED_GLOBAL = re.compile(r"GLOBAL ([\w.]+) ")
MAX_FOREIGN_CLASSES = 64


class OpaqueObject:
    """Stands in for a class the checkpoint names but we do not need (training metadata): it runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> "OpaqueObject":
        return OpaqueObject(*args, **kwargs)


def load_tensors_only(path: str | os.PathLike) -> Any:
    """torch.load(weights_only=True); names of unknown classes are mapped to inert OpaqueObject stand-ins.

    weights_only unpickling calls nothing but torch's tensor rebuilders and the classes allowed here, so a
    hostile file cannot execute code; the stand-ins make checkpoints that also pickle their training config
    (Lightning, OmegaConf, argparse Namespace ...) readable for their tensors.
    """
    names: list[str] = []
    for _ in range(MAX_FOREIGN_CLASSES):
        stand_ins = [(OpaqueObject, name) for name in names]
        try:
            with torch.serialization.safe_globals(stand_ins):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            match = _UNSUPPORTED_GLOBAL.search(str(err))
            if match is None or match.group(1) in names:
                raise
            names.append(match.group(1))
    raise pickle.UnpicklingError(f"{path}: more than {MAX_FOREIGN_CLASSES} foreign classes")
