"""Test helper: `.model` files in the original layout (a pickle of nested dicts) for tiny policies and IDMs.

The toolkit only reads `.model` files (vpt_model.model_files.read_model_file); the tests write them.
"""

from __future__ import annotations

import os
import pickle

from vpt_model.config import PolicyConfig
from vpt_model.inverse_dynamics import IDMConfig


def write_model_file(config: PolicyConfig | IDMConfig, path: str | os.PathLike) -> None:
    """Write `config` as the released files lay it out: {"model": {"args": {"net": {"args"}, "pi_head_opts"}}}."""
    net_args, pi_head_opts = config.to_model_kwargs() if isinstance(config, IDMConfig) else config.to_policy_kwargs()
    data = {"model": {"args": {"net": {"args": net_args}, "pi_head_opts": pi_head_opts}}}
    with open(path, "wb") as file:
        pickle.dump(data, file, protocol=4)
