"""The original STEVE-1 episode layout (frames.mp4 mp4v, actions.pkl, embeds_attn.pkl, metadata.json, len.txt).

Read only when the caller passes trust_legacy_pickle=True: unpickling runs code chosen by whoever wrote the
file. Even then, the unpickler resolves only the numpy constructors the original writer's pickles contain.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from data.episode.format import (
    EMBED_DIM,
    LEGACY_ACTIONS_FILE,
    LEGACY_EMBEDS_FILE,
    LEGACY_LEN_FILE,
    TRUST_FLAG_HELP,
    EpisodeFormatError,
)
from vpt_model.action_space import env_actions_to_arrays, env_arrays_to_joint

# Everything the original writer's pickles contain: numpy arrays and scalars in dicts and lists.
# Even a trusted file goes through this list, so a tampered one cannot name os.system.
_LEGACY_PICKLE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("collections", "OrderedDict"),
}


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array/scalar constructors."""

    def find_class(self, module: str, name: str) -> Any:
        module = module.replace("numpy.core.", "numpy._core.")  # pickles written by numpy 1.x
        if (module, name) not in _LEGACY_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: legacy episodes hold only numpy arrays")
        return super().find_class(module, name)


def _load_legacy_pickle(path: Path) -> Any:
    """Unpickle one file of an original STEVE-1 episode."""
    try:
        with open(path, "rb") as file:
            return _LegacyUnpickler(file).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError) as error:
        raise EpisodeFormatError(f"{path.name}: unreadable pickle ({error})") from error


def legacy_actions(path: Path) -> dict[str, np.ndarray]:
    """actions.pkl (list of env action dicts) -> the four action arrays of our format."""
    actions = _load_legacy_pickle(path / LEGACY_ACTIONS_FILE)
    if not isinstance(actions, list) or not all(isinstance(action, dict) for action in actions):
        raise EpisodeFormatError(f"{LEGACY_ACTIONS_FILE}: expected a list of action dicts")
    try:
        env_buttons, env_camera = env_actions_to_arrays(actions)
    except (ValueError, TypeError, IndexError) as error:
        raise EpisodeFormatError(f"{LEGACY_ACTIONS_FILE}: malformed action ({error})") from error
    arrays = {"env_buttons": env_buttons, "env_camera": env_camera}
    if np.all(np.isfinite(env_camera)):
        joint_buttons, joint_camera = env_arrays_to_joint(env_buttons, env_camera)
    else:  # left for the validator to report; the joint mapping needs finite angles
        joint_buttons = joint_camera = np.zeros(len(actions), dtype=np.int64)
    arrays["agent_buttons"] = joint_buttons.astype(np.int16)
    arrays["agent_camera"] = joint_camera.astype(np.int16)
    return arrays


def legacy_embeds(path: Path) -> np.ndarray:
    """embeds_attn.pkl (None, then (1,512) arrays) -> float32 [N,512] with NaN for None."""
    entries = _load_legacy_pickle(path / LEGACY_EMBEDS_FILE)
    if not isinstance(entries, list):
        raise EpisodeFormatError(f"{LEGACY_EMBEDS_FILE}: expected a list, got {type(entries).__name__}")
    embeds = np.full((len(entries), EMBED_DIM), np.nan, dtype=np.float32)
    for i, entry in enumerate(entries):
        if entry is None:
            continue
        row = np.asarray(entry, dtype=np.float32).reshape(-1)  # some original files hold lists
        if row.size != EMBED_DIM:
            raise EpisodeFormatError(f"{LEGACY_EMBEDS_FILE}: entry {i} has {row.size} values, expected {EMBED_DIM}")
        embeds[i] = row
    return embeds


def legacy_num_frames(path: Path) -> int:
    """The episode length recorded in len.txt."""
    try:
        text = (path / LEGACY_LEN_FILE).read_text().strip()
        return int(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise EpisodeFormatError(f"{LEGACY_LEN_FILE}: not an integer") from error


def refuse_legacy(path: Path) -> EpisodeFormatError:
    """The error for an original-layout episode opened without the trust flag."""
    return EpisodeFormatError(
        f"{path}: original STEVE-1 pickle layout ({LEGACY_ACTIONS_FILE}, {LEGACY_EMBEDS_FILE}); "
        f"pickle can run code, so it is read only with {TRUST_FLAG_HELP} for files you trust"
    )
