"""What defines a fine-tuning run: stored in every checkpoint, compared before a resume does any work.

Two commands are the same run when they would train the same weights: the same data (sampling name and
the episode lists themselves), the same start (the starting weights' content), the same outputs, model and
recipe. Everything else (workers, how often to log, validate and save, --max_steps, precision, compile)
may change between a stop and a resume; train.py logs what changed. The number of processes may change
too when the global batch (--batch_size x processes) stays the same: the data position is counted in
samples, so 2 GPUs x batch 6 resume as 3 GPUs x batch 4.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from toolkit_utils.file_hashes import file_fingerprint
from data.minecraft_dataset import read_sampling_file
from vpt_model.config import PolicyConfig

# Settings that define the run (train.py argument names), compared one by one.
RECIPE_SETTINGS = (
    "sampling", "out_weights", "T", "trunc_t", "gradient_accumulation_steps", "n_frames", "warmup_frames",
    "learning_rate", "weight_decay", "max_grad_norm", "seed", "freeze", "p_uncond", "min_btwn_goals",
    "max_btwn_goals", "augment", "val_every_nth",
)
# Settings a resume may change (logged when it does); anything else in the settings is bookkeeping.
SAFE_TO_CHANGE = (
    "num_workers", "log_freq", "val_freq", "val_freq_begin", "val_freq_switch_steps", "save_freq",
    "snapshot_every_n_frames", "max_steps", "mixed_precision", "compile", "cpu", "log_dir",
    "max_bad_sample_fraction", "trust_legacy_pickle", "batch_size", "processes",
)

def sampling_fingerprint(sampling_dir: str | os.PathLike, sampling: str) -> str:
    """sha256 of the episode lists `<sampling>_train.txt` and `_val.txt` (comments and blank lines ignored)."""
    lists = {split: read_sampling_file(Path(sampling_dir) / f"{sampling}_{split}.txt") for split in ("train", "val")}
    return hashlib.sha256(json.dumps(lists).encode()).hexdigest()


def run_identity(args: argparse.Namespace, world_size: int, architecture: PolicyConfig) -> dict[str, Any]:
    """The identity of the run that train.py's `args` describe, as plain JSON values."""
    identity = {name: getattr(args, name) for name in RECIPE_SETTINGS}
    identity["freeze"] = sorted(args.freeze)
    identity["sampling_lists_sha256"] = sampling_fingerprint(args.sampling_dir, args.sampling)
    identity["in_weights"] = file_fingerprint(args.in_weights) if args.in_weights else None
    identity["architecture"] = dataclasses.asdict(architecture)
    identity["global_batch_size"] = args.batch_size * world_size
    return json.loads(json.dumps(identity))  # tuples -> lists: compares equal to what a checkpoint gives back


def identity_hash(identity: dict[str, Any]) -> str:
    """A short hash of the identity (the 'settings hash' the text log shows at each start)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def _weights_label(fingerprint: dict[str, Any] | None) -> str:
    return "none (fresh initialisation)" if fingerprint is None else f"{fingerprint['path']} (sha256 {fingerprint['sha256'][:12]})"


def identity_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'what: stored value in the checkpoint, current value now' for each part of the identity that differs."""
    differences = []
    for key in sorted(set(stored) | set(current)):
        was, now = stored.get(key), current.get(key)
        if key == "in_weights":  # the content counts, not where the file lies
            if (was or {}).get("sha256") != (now or {}).get("sha256"):
                differences.append(f"--in_weights {_weights_label(was)} in the checkpoint, {_weights_label(now)} now")
        elif key == "architecture" and was != now and isinstance(was, dict) and isinstance(now, dict):
            fields = [f"{k} {was.get(k)} vs {now.get(k)}" for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
            differences.append(f"architecture (--in_model) {', '.join(fields)}")
        elif key == "sampling_lists_sha256" and was != now:
            differences.append("the episode lists of the sampling changed since the checkpoint")
        elif key == "global_batch_size" and was != now:
            differences.append(f"global batch (--batch_size x processes) {was} in the checkpoint, {now} now")
        elif was != now:
            differences.append(f"--{key} {was} in the checkpoint, {now} now")
    return differences


def changed_settings(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The safe-to-change settings that differ from the checkpoint's: 'name old -> new'."""
    return [f"{key} {stored.get(key)} -> {current.get(key)}" for key in SAFE_TO_CHANGE
            if key in stored and stored.get(key) != current.get(key)]
