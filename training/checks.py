"""Checks shared by train.py and evaluate_offline.py: each raises cli.SettingError (one line with the fix)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import torch

from embed_conditioned_policy import SteveAgentPolicy
from toolkit_utils import cli
from toolkit_utils.state_dicts import StateDictMismatchError, check_state_dict, read_state_dict
from vpt_model.config import PRESET_NAMES, PolicyConfig, preset
from vpt_model.model_files import load_policy_config, strip_key_prefixes

MODEL_FIX = "download_weights.sh puts 2x.model in data/weights/vpt/; or use a preset: 2x, 1x, 3x, tiny"
SAMPLING_FIX = "run 2_create_sampling.sh, or check --sampling and --sampling_dir"
MAX_SHOWN_WORDS = 40  # a mismatch names hundreds of keys: the refusal shows the start


def check_windows(T: int, trunc_t: int) -> None:
    """T must be whole truncated-BPTT windows."""
    if T % trunc_t:
        cli.refuse("--T", T, f"is not a multiple of --trunc_t {trunc_t}", "use e.g. --T 320 --trunc_t 64")


def check_goal_gaps(min_btwn_goals: int, max_btwn_goals: int) -> None:
    """Hindsight goal gaps are drawn from [min, max)."""
    if max_btwn_goals <= min_btwn_goals:
        cli.refuse("--max_btwn_goals", max_btwn_goals, f"must exceed --min_btwn_goals {min_btwn_goals}",
                   "gaps are drawn from [min, max): e.g. --min_btwn_goals 15 --max_btwn_goals 200")


def check_sampling(sampling_dir: str | os.PathLike, sampling: str, splits: Sequence[str] = ("train", "val")) -> None:
    """The sampling's list files exist and are readable."""
    for split in splits:
        cli.existing_file("--sampling", Path(sampling_dir) / f"{sampling}_{split}.txt", SAMPLING_FIX)


def check_policy_files(in_model: str, weights: Sequence[str], allow_missing: tuple[str, ...] = (),
                       setting: str = "--in_weights") -> PolicyConfig:
    """The architecture of --in_model, after checking that every weights file exists and fits it."""
    if str(in_model).endswith(".model") or Path(in_model).exists():
        cli.existing_file("--in_model", in_model, MODEL_FIX)
    try:
        architecture = load_policy_config(in_model)
    except (ValueError, OSError) as e:
        cli.refuse("--in_model", in_model, " ".join(str(e).split()), MODEL_FIX)
    if weights:
        with torch.device("meta"):  # names and shapes only: no memory, no initialisation
            shapes = SteveAgentPolicy(architecture)
    for path in weights:
        cli.existing_file(setting, path, "download_weights.sh puts steve1.weights in data/weights/steve1/")
        try:
            check_state_dict(shapes, strip_key_prefixes(read_state_dict(path)), str(path), allow_missing)
        except (StateDictMismatchError, ValueError) as e:
            words = str(e).split()
            shown = " ".join(words[:MAX_SHOWN_WORDS]) + (" ..." if len(words) > MAX_SHOWN_WORDS else "")
            fits = isinstance(e, StateDictMismatchError) and matching_presets(read_state_dict(path), allow_missing)
            fix = (f"these weights fit the {' / '.join(fits)} architecture: give its .model as --in_model (IN_MODEL)" if fits
                   else f"use weights of the --in_model architecture ({in_model})")
            cli.refuse(setting, path, shown, fix)
    return architecture


def matching_presets(state_dict: Mapping[str, torch.Tensor], allow_missing: tuple[str, ...] = ()) -> list[str]:
    """The preset architectures ('2x', '1x', '3x', 'tiny') whose keys and shapes `state_dict` fits exactly."""
    fits = []
    for name in PRESET_NAMES:
        with torch.device("meta"):
            model = SteveAgentPolicy(preset(name))
        try:
            check_state_dict(model, strip_key_prefixes(state_dict), name, allow_missing)
        except StateDictMismatchError:
            continue
        fits.append(name)
    return fits


def check_writable_folder(setting: str, value: str | os.PathLike, folder: str | os.PathLike, fix: str) -> None:
    """Refuse unless `folder` exists or can be created, and a file can be written in it.

    Tried for real (create the missing folders, write and remove a temporary file, remove the folders it
    created): permission bits do not tell (root, read-only mounts, /proc). `value` is what the user gave
    (--out_weights names a file whose folder is checked). Leaves nothing behind.
    """
    folder = Path(folder)
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        problem = "is a file, not a folder" if existing == Path(value) else f"{existing} is a file, not a folder"
        cli.refuse(setting, value, problem, fix)
    created = []
    try:
        for part in reversed([folder, *folder.parents]):
            if not os.path.lexists(part):
                part.mkdir()
                created.append(part)
        fd, probe = tempfile.mkstemp(prefix=".write_check_", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        where = e.filename or folder
        cli.refuse(setting, value, f"cannot be written ({e.strerror or e}: {where})", fix)
    finally:
        for part in reversed(created):
            try:
                part.rmdir()
            except OSError:  # something else put a file there meanwhile: it is not ours to remove
                pass
