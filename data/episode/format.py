"""The episode format: file names, array layouts and the checks every reader, writer and validator shares.

Our format, written only by `data.episode.writer.EpisodeWriter` (no pickle anywhere):

    <episode_dir>/
      frames.mp4           h264, 128x128, 20 fps (data.video_io.VideoWriter)
      actions.npz          env_buttons uint8 [N,23] (ENV_BUTTONS order), env_camera float32 [N,2]
                           (pitch, yaw degrees, within the MineRL action space's -180..180),
                           agent_buttons int16 [N] (joint 0..8640), agent_camera int16 [N] (joint 0..120);
                           episodes labelled by the inverse dynamics model also hold idm_confidence
                           float32 [N,22] (probability of each chosen output: the 20 FACTORED_BUTTONS,
                           camera pitch, camera yaw)
      mineclip_embeds.npy  float32 [N,512]; rows 0..14 NaN, row i >= 15 embeds frames i-15..i
      metadata.json        format, format_version, num_frames, fps, frame_size, embed_start,
                           source, conversion, versions, created, video, files (size + sha256)

The original STEVE-1 layout (frames.mp4 mp4v, actions.pkl, embeds_attn.pkl, metadata.json, len.txt) is
read through the same API (`data.episode.legacy`), only when the caller trusts its pickles.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from vpt_model.action_space import ENV_BUTTONS, N_BUTTON_COMBOS, N_CAMERA_COMBOS, env_arrays_to_joint

FORMAT_NAME = "steve1-toolkit-episode"
FORMAT_VERSION = 1
FRAME_SIZE = 128
FPS = 20
EMBED_DIM = 512
EMBED_START = 15  # MineCLIP sees 16 frames: the first embedding exists at frame 15
MIN_FRAMES = EMBED_START + 1  # an episode without a single embedding cannot be trained on
N_ENV_BUTTONS = len(ENV_BUTTONS)
# MineRL's camera action space is Box(-180, 180) degrees per step (pitch, yaw).
ENV_CAMERA_LIMIT_DEGREES = 180.0

FRAMES_FILE = "frames.mp4"
ACTIONS_FILE = "actions.npz"
EMBEDS_FILE = "mineclip_embeds.npy"
METADATA_FILE = "metadata.json"
LEGACY_ACTIONS_FILE = "actions.pkl"
LEGACY_EMBEDS_FILE = "embeds_attn.pkl"
LEGACY_LEN_FILE = "len.txt"

TOOLKIT_FILES = (FRAMES_FILE, ACTIONS_FILE, EMBEDS_FILE, METADATA_FILE)
LEGACY_FILES = (FRAMES_FILE, LEGACY_ACTIONS_FILE, LEGACY_EMBEDS_FILE, METADATA_FILE, LEGACY_LEN_FILE)
TOOLKIT_LAYOUT = "toolkit"
LEGACY_LAYOUT = "legacy"
TRUST_FLAG_HELP = "trust_legacy_pickle=True (command line: --trust_legacy_pickle)"

# Array name -> dtype in actions.npz (every array has N rows).
ACTION_DTYPES = {
    "env_buttons": np.dtype(np.uint8),
    "env_camera": np.dtype(np.float32),
    "agent_buttons": np.dtype(np.int16),
    "agent_camera": np.dtype(np.int16),
}
# Optional arrays of actions.npz: name -> (dtype, columns). idm_confidence: see data/generation/idm_labelling.py
# (columns = vpt_model.inverse_dynamics.CONFIDENCE_NAMES, not imported here: the validator needs no torch).
IDM_CONFIDENCE = "idm_confidence"
OPTIONAL_ACTION_ARRAYS = {IDM_CONFIDENCE: (np.dtype(np.float32), 22)}
# Writer leftovers: ".<name>.tmp-<pid>-<hex>" while writing, ".<name>.old-<pid>-<hex>" while replacing.
LEFTOVER_DIR = re.compile(r"^\.(?P<name>.+)\.(tmp|old)-(?P<pid>\d+)-[0-9a-f]+$")
WRITER_METADATA_FIELDS = {"env_button_names", "video"}  # written too, beyond the required ones
METADATA_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": str, "format_version": int, "num_frames": int, "fps": (int, float), "frame_size": list,
    "embed_start": int, "source": dict, "conversion": dict, "versions": dict, "created": str, "files": dict,
}


class EpisodeFormatError(ValueError):
    """A directory is not a readable episode (wrong layout, missing or inconsistent files)."""


def is_leftover_dir(path: str | os.PathLike) -> bool:
    """True for the temporary directories of an EpisodeWriter that never finished."""
    return bool(LEFTOVER_DIR.match(Path(path).name))


def leftover_writer_pid(path: str | os.PathLike) -> int | None:
    """The process id in a writer leftover's name (None when `path` is not a leftover)."""
    match = LEFTOVER_DIR.match(Path(path).name)
    return int(match.group("pid")) if match else None


def detect_layout(path: str | os.PathLike) -> str:
    """TOOLKIT_LAYOUT or LEGACY_LAYOUT, from the files present in an episode directory."""
    path = Path(path)
    if is_leftover_dir(path):
        raise EpisodeFormatError(f"{path}: unfinished temporary directory of an interrupted EpisodeWriter; delete it")
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: episode directory does not exist")
    ours = [name for name in (ACTIONS_FILE, EMBEDS_FILE) if (path / name).exists()]
    legacy = [name for name in (LEGACY_ACTIONS_FILE, LEGACY_EMBEDS_FILE, LEGACY_LEN_FILE) if (path / name).exists()]
    if ours and legacy:
        raise EpisodeFormatError(f"{path}: mixes both layouts ({', '.join(ours + legacy)})")
    if ours:
        return TOOLKIT_LAYOUT
    if legacy:
        return LEGACY_LAYOUT
    if (path / METADATA_FILE).exists() or (path / FRAMES_FILE).exists():
        return TOOLKIT_LAYOUT  # an episode of ours with its arrays missing: report those as missing
    raise EpisodeFormatError(
        f"{path}: not an episode directory (no {ACTIONS_FILE}/{EMBEDS_FILE} nor {LEGACY_ACTIONS_FILE}/{LEGACY_EMBEDS_FILE})"
    )


# ----------------------------------------------------------------------------------------------
# Checks shared by the writer, the loader and the validator. Each returns error strings.


def check_action_arrays(arrays: Mapping[str, np.ndarray], check_joint: bool = True, name: str = ACTIONS_FILE) -> list[str]:
    """Shapes, dtypes and ranges of the four action arrays, and joint indices against env arrays.

    Values: env buttons 0/1, env camera finite and within +-ENV_CAMERA_LIMIT_DEGREES, joint indices in range.
    Messages name the file (`name`), the array and the first bad row.
    """
    errors = []
    missing = [array for array in ACTION_DTYPES if array not in arrays]
    if missing:
        return [f"{name}: missing array(s) {', '.join(missing)}"]
    n = rows(arrays["env_buttons"])
    shapes = {"env_buttons": (n, N_ENV_BUTTONS), "env_camera": (n, 2), "agent_buttons": (n,), "agent_camera": (n,)}
    for array, dtype in ACTION_DTYPES.items():
        value = arrays[array]
        if value.shape != shapes[array]:
            errors.append(f"{name}: {array} has shape {list(value.shape)}, expected {list(shapes[array])}")
        if value.dtype != dtype:
            errors.append(f"{name}: {array} has dtype {value.dtype}, expected {dtype}")
    if errors:
        return errors
    buttons, camera = arrays["env_buttons"], arrays["env_camera"]
    agent_buttons, agent_camera = arrays["agent_buttons"], arrays["agent_camera"]
    if np.any(buttons > 1):
        row = first(buttons > 1)
        errors.append(f"{name}: env_buttons has values other than 0/1 (first at frame {row}: "
                      f"{ENV_BUTTONS[int(np.argmax(buttons[row] > 1))]} = {int(buttons[row].max())})")
    finite = np.isfinite(camera)
    if not np.all(finite):
        errors.append(f"{name}: env_camera is not finite at frame {first(~finite)}")
    outside = finite & (np.abs(camera) > ENV_CAMERA_LIMIT_DEGREES)
    if np.any(outside):
        row = first(outside)
        errors.append(f"{name}: env_camera {camera[row].tolist()} degrees at frame {row} is outside the action space's "
                      f"-{ENV_CAMERA_LIMIT_DEGREES:g}..{ENV_CAMERA_LIMIT_DEGREES:g}")
    if np.any((agent_buttons < 0) | (agent_buttons >= N_BUTTON_COMBOS)):
        errors.append(f"{name}: agent_buttons outside 0..{N_BUTTON_COMBOS - 1}")
    if np.any((agent_camera < 0) | (agent_camera >= N_CAMERA_COMBOS)):
        errors.append(f"{name}: agent_camera outside 0..{N_CAMERA_COMBOS - 1}")
    errors += check_optional_action_arrays(arrays, n, name)
    if check_joint and not errors:
        joint_buttons, joint_camera = env_arrays_to_joint(buttons, camera)
        wrong = (joint_buttons != agent_buttons) | (joint_camera != agent_camera)
        if np.any(wrong):
            errors.append(
                f"{name}: agent_buttons/agent_camera disagree with env_buttons/env_camera at "
                f"{int(wrong.sum())} frame(s), first {first(wrong)}"
            )
    return errors


def check_optional_action_arrays(arrays: Mapping[str, np.ndarray], n: int, name: str = ACTIONS_FILE) -> list[str]:
    """Shape [N, columns], dtype and the [0, 1] range of the optional arrays that are present."""
    errors = []
    for array, (dtype, columns) in OPTIONAL_ACTION_ARRAYS.items():
        if array not in arrays:
            continue
        value = arrays[array]
        if value.shape != (n, columns) or value.dtype != dtype:
            errors.append(f"{name}: {array} is {value.dtype} {list(value.shape)}, expected {dtype} [{n}, {columns}]")
        elif not np.all((value >= 0) & (value <= 1)):  # NaN fails too
            errors.append(f"{name}: {array} has values outside [0, 1] (first at frame {first(~((value >= 0) & (value <= 1)))})")
    return errors


def check_embeds(embeds: np.ndarray, name: str) -> list[str]:
    """Shape [N,512] float32, rows < EMBED_START NaN, later rows finite and not all zero."""
    if embeds.ndim != 2 or embeds.shape[1] != EMBED_DIM:
        return [f"{name}: shape {list(embeds.shape)}, expected [N, {EMBED_DIM}]"]
    if embeds.dtype != np.float32:
        return [f"{name}: dtype {embeds.dtype}, expected float32"]
    errors = []
    head, tail = embeds[:EMBED_START], embeds[EMBED_START:]
    not_nan = ~np.all(np.isnan(head), axis=1)
    if np.any(not_nan):
        errors.append(f"{name}: row {first(not_nan)} holds values; rows 0..{EMBED_START - 1} must be NaN (no full window)")
    bad = ~np.all(np.isfinite(tail), axis=1)
    if np.any(bad):
        errors.append(
            f"{name}: {int(bad.sum())} row(s) from frame {EMBED_START} on are not finite (NaN/inf), "
            f"first at frame {EMBED_START + first(bad)}"
        )
    zero = np.all(tail == 0, axis=1)
    if np.any(zero):
        errors.append(f"{name}: {int(zero.sum())} all-zero row(s), first at frame {EMBED_START + first(zero)}")
    return errors


def rows(array: np.ndarray) -> int:
    """Leading dimension of an array (0 for a scalar array)."""
    return array.shape[0] if array.ndim else 0


def first(mask: np.ndarray) -> int:
    """Index of the first row where a boolean mask is true anywhere."""
    return int(np.argmax(mask.reshape(len(mask), -1).any(axis=1)))


def count_mismatch(counts: Mapping[str, int | None]) -> list[str]:
    """An error naming every count when the known ones disagree."""
    known = {name: count for name, count in counts.items() if count is not None}
    if len(set(known.values())) > 1:
        listed = ", ".join(f"{name} {count}" for name, count in known.items())
        return [f"frame-count mismatch: {listed}"]
    return []


def read_json(path: Path) -> dict:
    """A JSON object from a file, or EpisodeFormatError naming the file."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EpisodeFormatError(f"{path.name}: unreadable JSON ({error})") from error
    if not isinstance(value, dict):
        raise EpisodeFormatError(f"{path.name}: expected a JSON object")
    return value


def check_format_tag(metadata: Mapping, path: Path) -> None:
    """Raise unless metadata names our format at a version this code reads."""
    if metadata.get("format") != FORMAT_NAME:
        raise EpisodeFormatError(f"{path}: {METADATA_FILE} format is {metadata.get('format')!r}, expected {FORMAT_NAME!r}")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise EpisodeFormatError(
            f"{path}: format_version {version!r}; this toolkit reads version {FORMAT_VERSION} (a newer toolkit wrote it?)"
        )
