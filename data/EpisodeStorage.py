"""Episode directories: write, load and validate them (our format and the original STEVE-1 layout).

Our format, written only by EpisodeWriter (no pickle anywhere):

    <episode_dir>/
      frames.mp4           h264, 128x128, 20 fps (data.video_io.VideoWriter)
      actions.npz          env_buttons uint8 [N,23] (ENV_BUTTONS order), env_camera float32 [N,2]
                           (pitch, yaw degrees), agent_buttons int16 [N] (joint 0..8640),
                           agent_camera int16 [N] (joint 0..120); episodes labelled by the inverse dynamics
                           model also hold idm_confidence float32 [N,22] (probability of each chosen output:
                           the 20 FACTORED_BUTTONS, camera pitch, camera yaw)
      mineclip_embeds.npy  float32 [N,512]; rows 0..14 NaN, row i >= 15 embeds frames i-15..i
      metadata.json        format, format_version, num_frames, fps, frame_size, embed_start,
                           source, conversion, versions, created, video, files (size + sha256)

The original STEVE-1 layout (frames.mp4 mp4v, actions.pkl, embeds_attn.pkl, metadata.json,
len.txt) is read through the same Episode API, but only when the caller passes
trust_legacy_pickle=True: unpickling runs code chosen by whoever wrote the file.

Command line: python data/EpisodeStorage.py --validate PATH [PATH ...] [--trust_legacy_pickle]
[--no_decode], where PATH is an episode directory or a dataset directory of episodes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import platform
import re
import secrets
import shutil
import sys
import weakref
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import av
import cv2
import numpy as np

from data.video_io import DEFAULT_CRF, DEFAULT_GOP, VideoError, VideoReader, VideoWriter, verify_video
from vpt_model.action_space import (
    ENV_BUTTONS,
    N_BUTTON_COMBOS,
    N_CAMERA_COMBOS,
    env_actions_to_arrays,
    env_arrays_to_joint,
)

FORMAT_NAME = "steve1-toolkit-episode"
FORMAT_VERSION = 1
FRAME_SIZE = 128
FPS = 20
EMBED_DIM = 512
EMBED_START = 15  # MineCLIP sees 16 frames: the first embedding exists at frame 15
MIN_FRAMES = EMBED_START + 1  # an episode without a single embedding cannot be trained on
N_ENV_BUTTONS = len(ENV_BUTTONS)

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
_LEFTOVER_DIR = re.compile(r"^\..+\.(tmp|old)-\d+-[0-9a-f]+$")
_WRITER_METADATA_FIELDS = {"env_button_names", "video"}  # written too, beyond the required ones
_METADATA_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": str, "format_version": int, "num_frames": int, "fps": (int, float), "frame_size": list,
    "embed_start": int, "source": dict, "conversion": dict, "versions": dict, "created": str, "files": dict,
}


class EpisodeFormatError(ValueError):
    """A directory is not a readable episode (wrong layout, missing or inconsistent files)."""


def is_leftover_dir(path: str | os.PathLike) -> bool:
    """True for the temporary directories of an EpisodeWriter that never finished."""
    return bool(_LEFTOVER_DIR.match(Path(path).name))


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


def _check_action_arrays(arrays: Mapping[str, np.ndarray], check_joint: bool = True) -> list[str]:
    """Shapes, dtypes and ranges of the four action arrays, and joint indices against env arrays."""
    errors = []
    missing = [name for name in ACTION_DTYPES if name not in arrays]
    if missing:
        return [f"{ACTIONS_FILE}: missing array(s) {', '.join(missing)}"]
    n = _rows(arrays["env_buttons"])
    shapes = {"env_buttons": (n, N_ENV_BUTTONS), "env_camera": (n, 2), "agent_buttons": (n,), "agent_camera": (n,)}
    for name, dtype in ACTION_DTYPES.items():
        array = arrays[name]
        if array.shape != shapes[name]:
            errors.append(f"{ACTIONS_FILE}: {name} has shape {list(array.shape)}, expected {list(shapes[name])}")
        if array.dtype != dtype:
            errors.append(f"{ACTIONS_FILE}: {name} has dtype {array.dtype}, expected {dtype}")
    if errors:
        return errors
    buttons, camera = arrays["env_buttons"], arrays["env_camera"]
    agent_buttons, agent_camera = arrays["agent_buttons"], arrays["agent_camera"]
    if np.any(buttons > 1):
        errors.append(f"{ACTIONS_FILE}: env_buttons has values other than 0/1 (first at frame {_first(buttons > 1)})")
    if not np.all(np.isfinite(camera)):
        errors.append(f"{ACTIONS_FILE}: env_camera is not finite at frame {_first(~np.isfinite(camera))}")
    if np.any((agent_buttons < 0) | (agent_buttons >= N_BUTTON_COMBOS)):
        errors.append(f"{ACTIONS_FILE}: agent_buttons outside 0..{N_BUTTON_COMBOS - 1}")
    if np.any((agent_camera < 0) | (agent_camera >= N_CAMERA_COMBOS)):
        errors.append(f"{ACTIONS_FILE}: agent_camera outside 0..{N_CAMERA_COMBOS - 1}")
    errors += _check_optional_action_arrays(arrays, n)
    if check_joint and not errors:
        joint_buttons, joint_camera = env_arrays_to_joint(buttons, camera)
        wrong = (joint_buttons != agent_buttons) | (joint_camera != agent_camera)
        if np.any(wrong):
            errors.append(
                f"{ACTIONS_FILE}: agent_buttons/agent_camera disagree with env_buttons/env_camera at "
                f"{int(wrong.sum())} frame(s), first {_first(wrong)}"
            )
    return errors


def _check_optional_action_arrays(arrays: Mapping[str, np.ndarray], n: int) -> list[str]:
    """Shape [N, columns], dtype and the [0, 1] range of the optional arrays that are present."""
    errors = []
    for name, (dtype, columns) in OPTIONAL_ACTION_ARRAYS.items():
        if name not in arrays:
            continue
        array = arrays[name]
        if array.shape != (n, columns) or array.dtype != dtype:
            errors.append(f"{ACTIONS_FILE}: {name} is {array.dtype} {list(array.shape)}, expected {dtype} [{n}, {columns}]")
        elif not np.all((array >= 0) & (array <= 1)):  # NaN fails too
            errors.append(f"{ACTIONS_FILE}: {name} has values outside [0, 1] (first at frame {_first(~((array >= 0) & (array <= 1)))})")
    return errors


def _check_embeds(embeds: np.ndarray, name: str) -> list[str]:
    """Shape [N,512] float32, rows < EMBED_START NaN, later rows finite and not all zero."""
    if embeds.ndim != 2 or embeds.shape[1] != EMBED_DIM:
        return [f"{name}: shape {list(embeds.shape)}, expected [N, {EMBED_DIM}]"]
    if embeds.dtype != np.float32:
        return [f"{name}: dtype {embeds.dtype}, expected float32"]
    errors = []
    head, tail = embeds[:EMBED_START], embeds[EMBED_START:]
    not_nan = ~np.all(np.isnan(head), axis=1)
    if np.any(not_nan):
        errors.append(f"{name}: row {_first(not_nan)} holds values; rows 0..{EMBED_START - 1} must be NaN (no full window)")
    bad = ~np.all(np.isfinite(tail), axis=1)
    if np.any(bad):
        errors.append(
            f"{name}: {int(bad.sum())} row(s) from frame {EMBED_START} on are not finite (NaN/inf), "
            f"first at frame {EMBED_START + _first(bad)}"
        )
    zero = np.all(tail == 0, axis=1)
    if np.any(zero):
        errors.append(f"{name}: {int(zero.sum())} all-zero row(s), first at frame {EMBED_START + _first(zero)}")
    return errors


def _rows(array: np.ndarray) -> int:
    """Leading dimension of an array (0 for a scalar array)."""
    return array.shape[0] if array.ndim else 0


def _first(mask: np.ndarray) -> int:
    """Index of the first row where a boolean mask is true anywhere."""
    return int(np.argmax(mask.reshape(len(mask), -1).any(axis=1)))


def _count_mismatch(counts: Mapping[str, int | None]) -> list[str]:
    """An error naming every count when the known ones disagree."""
    known = {name: count for name, count in counts.items() if count is not None}
    if len(set(known.values())) > 1:
        listed = ", ".join(f"{name} {count}" for name, count in known.items())
        return [f"frame-count mismatch: {listed}"]
    return []


def _sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# The original STEVE-1 layout (pickle).

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


def _legacy_actions(path: Path) -> dict[str, np.ndarray]:
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


def _legacy_embeds(path: Path) -> np.ndarray:
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


def _legacy_num_frames(path: Path) -> int:
    """The episode length recorded in len.txt."""
    try:
        text = (path / LEGACY_LEN_FILE).read_text().strip()
        return int(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise EpisodeFormatError(f"{LEGACY_LEN_FILE}: not an integer") from error


def _refuse_legacy(path: Path) -> EpisodeFormatError:
    """The error for an original-layout episode opened without the trust flag."""
    return EpisodeFormatError(
        f"{path}: original STEVE-1 pickle layout ({LEGACY_ACTIONS_FILE}, {LEGACY_EMBEDS_FILE}); "
        f"pickle can run code, so it is read only with {TRUST_FLAG_HELP} for files you trust"
    )


# ----------------------------------------------------------------------------------------------
# Loading.


def _read_json(path: Path) -> dict:
    """A JSON object from a file, or EpisodeFormatError naming the file."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EpisodeFormatError(f"{path.name}: unreadable JSON ({error})") from error
    if not isinstance(value, dict):
        raise EpisodeFormatError(f"{path.name}: expected a JSON object")
    return value


def _load_actions_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of actions.npz (no pickle)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise EpisodeFormatError(f"{ACTIONS_FILE}: unreadable ({type(error).__name__}: {error})") from error


def _load_embeds_npy(path: Path, mmap: bool) -> np.ndarray:
    """mineclip_embeds.npy, memory-mapped when asked (no pickle)."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise EpisodeFormatError(f"{EMBEDS_FILE}: unreadable ({error})") from error


@dataclass
class Episode:
    """One loaded episode, whichever layout it came from; frames are decoded on demand."""

    path: Path
    layout: str
    num_frames: int
    env_buttons: np.ndarray  # (N, 23) uint8, ENV_BUTTONS order
    env_camera: np.ndarray  # (N, 2) float32, pitch and yaw in degrees
    agent_buttons: np.ndarray  # (N,) int16 joint button index
    agent_camera: np.ndarray  # (N,) int16 joint camera index
    embeds: np.ndarray  # (N, 512) float32, NaN rows < EMBED_START; memory-mapped for our layout
    metadata: dict
    idm_confidence: np.ndarray | None = None  # (N, 22) float32 for episodes labelled by the IDM, else None
    _reader: VideoReader | None = field(default=None, init=False, repr=False)

    def read_frames(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as RGB uint8 [n, 128, 128, 3]."""
        if not 0 <= start <= stop <= self.num_frames:
            raise ValueError(f"{self.path}: frame range [{start}, {stop}) is outside 0..{self.num_frames}")
        if self._reader is None:
            reader = VideoReader(self.path / FRAMES_FILE)
            if reader.num_frames < self.num_frames:
                reader.close()
                raise EpisodeFormatError(
                    f"{self.path}: {FRAMES_FILE} has {reader.num_frames} frames, the episode {self.num_frames}"
                )
            self._reader = reader
        return self._reader.read_range(start, stop)

    def close(self) -> None:
        """Release the video file."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> "Episode":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def load_episode(path: str | os.PathLike, trust_legacy_pickle: bool = False, mmap_embeds: bool = True) -> Episode:
    """Load an episode directory of our format, or of the original layout when trusted."""
    path = Path(path)
    try:
        return _load_episode(path, trust_legacy_pickle, mmap_embeds)
    except EpisodeFormatError as error:
        if str(error).startswith(f"{path}: "):
            raise
        raise EpisodeFormatError(f"{path}: {error}") from error


def _load_episode(path: Path, trust_legacy_pickle: bool, mmap_embeds: bool) -> Episode:
    """load_episode without the path prefix on every error."""
    layout = detect_layout(path)
    if layout == LEGACY_LAYOUT:
        if not trust_legacy_pickle:
            raise _refuse_legacy(path)
        missing = [name for name in LEGACY_FILES if not (path / name).exists()]
        if missing:
            raise EpisodeFormatError(f"{path}: missing {', '.join(missing)}")
        num_frames = _legacy_num_frames(path)
        metadata = _read_json(path / METADATA_FILE)
        arrays = _legacy_actions(path)
        embeds = _legacy_embeds(path)
    else:
        missing = [name for name in TOOLKIT_FILES if not (path / name).exists()]
        if missing:
            raise EpisodeFormatError(f"{path}: missing {', '.join(missing)}")
        metadata = _read_json(path / METADATA_FILE)
        _check_format_tag(metadata, path)
        num_frames = metadata.get("num_frames")
        if not isinstance(num_frames, int):
            raise EpisodeFormatError(f"{path}: {METADATA_FILE} has no integer num_frames")
        arrays = _load_actions_npz(path / ACTIONS_FILE)
        embeds = _load_embeds_npy(path / EMBEDS_FILE, mmap_embeds)
        errors = _check_action_arrays(arrays, check_joint=False)
        if errors:
            raise EpisodeFormatError(f"{path}: {'; '.join(errors)}")
    # Cheap consistency checks only (shapes and counts); validate_episode checks the values.
    if embeds.ndim != 2 or embeds.shape[1] != EMBED_DIM or embeds.dtype != np.float32:
        raise EpisodeFormatError(f"{path}: embeddings are {embeds.dtype} {list(embeds.shape)}, expected float32 [N, 512]")
    counts = {"metadata": num_frames, "actions": _rows(arrays["env_buttons"]), "embeds": _rows(embeds)}
    mismatch = _count_mismatch(counts)
    if mismatch:
        raise EpisodeFormatError(f"{path}: {mismatch[0]}")
    return Episode(
        path=path,
        layout=layout,
        num_frames=num_frames,
        env_buttons=arrays["env_buttons"],
        env_camera=arrays["env_camera"],
        agent_buttons=arrays["agent_buttons"],
        agent_camera=arrays["agent_camera"],
        embeds=embeds,
        metadata=metadata,
        idm_confidence=arrays.get(IDM_CONFIDENCE),
    )


def _check_format_tag(metadata: Mapping, path: Path) -> None:
    """Raise unless metadata names our format at a version this code reads."""
    if metadata.get("format") != FORMAT_NAME:
        raise EpisodeFormatError(f"{path}: {METADATA_FILE} format is {metadata.get('format')!r}, expected {FORMAT_NAME!r}")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise EpisodeFormatError(
            f"{path}: format_version {version!r}; this toolkit reads version {FORMAT_VERSION} (a newer toolkit wrote it?)"
        )


# ----------------------------------------------------------------------------------------------
# Writing.


def _fsync_path(path: Path) -> None:
    """Flush a file or directory to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _versions() -> dict[str, str]:
    """Versions of what produced the files, for metadata.json."""
    try:
        toolkit = importlib_metadata.version("steve1-finetune-toolkit")
    except importlib_metadata.PackageNotFoundError:
        toolkit = "unknown"
    return {
        "toolkit": toolkit,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "av": av.__version__,
        "libavcodec": ".".join(str(part) for part in av.library_versions["libavcodec"]),
        "opencv": cv2.__version__,
    }


class EpisodeWriter:
    """Write one episode into a hidden temporary directory and rename it into place on close()."""

    def __init__(
        self,
        final_dir: str | os.PathLike,
        *,
        source: Mapping[str, Any] | None = None,
        conversion: Mapping[str, Any] | None = None,
        extra_metadata: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        crf: int = DEFAULT_CRF,
        gop: int = DEFAULT_GOP,
    ):
        self.final_dir = Path(final_dir)
        self._overwrite = overwrite
        self._refuse_existing()
        self._source = dict(source or {})
        self._conversion = dict(conversion or {})
        self._extra = dict(extra_metadata or {})
        clash = set(self._extra) & (set(_METADATA_TYPES) | _WRITER_METADATA_FIELDS)
        if clash:
            raise ValueError(f"extra_metadata may not set the format's own fields: {sorted(clash)}")
        json.dumps([self._source, self._conversion, self._extra])  # fail now, not after all the frames
        self._crf, self._gop = crf, gop
        self.final_dir.parent.mkdir(parents=True, exist_ok=True)
        self.temp_dir = self.final_dir.parent / f".{self.final_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        self.temp_dir.mkdir()
        # Removes the temporary directory if this writer is dropped without close() or abort().
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.temp_dir), True)
        self._video = VideoWriter(self.temp_dir / FRAMES_FILE, fps=FPS, crf=crf, gop=gop)
        self._buttons: list[np.ndarray] = []
        self._camera: list[np.ndarray] = []
        self._num_actions = 0
        self._embeds: np.ndarray | None = None
        self._idm_confidence: np.ndarray | None = None
        self._done = False  # closed or aborted
        self._committed = False

    @property
    def num_frames(self) -> int:
        """Frames appended so far."""
        return self._video.num_frames

    def _refuse_existing(self) -> None:
        """Raise FileExistsError if the final directory exists and overwriting was not asked for."""
        if self.final_dir.exists() and not self._overwrite:
            raise FileExistsError(f"{self.final_dir}: already exists; pass overwrite=True to replace it")

    def append_frame(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 [128, 128, 3] frame."""
        frame = np.asarray(frame)
        if frame.shape != (FRAME_SIZE, FRAME_SIZE, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [{FRAME_SIZE}, {FRAME_SIZE}, 3], got {frame.dtype} {frame.shape}")
        self._video.write(frame)

    def append_action(self, action: Mapping[str, Any]) -> None:
        """Append one MineRL env action dict (button name -> 0/1, "camera" -> [pitch, yaw] degrees)."""
        buttons, camera = env_actions_to_arrays([action])
        self.append_actions(buttons, camera)

    def append_actions(self, env_buttons: np.ndarray, env_camera: np.ndarray) -> None:
        """Append env actions as arrays: buttons [n, 23] 0/1 in ENV_BUTTONS order, camera [n, 2] degrees."""
        env_buttons, env_camera = np.asarray(env_buttons), np.asarray(env_camera, dtype=np.float32)
        if env_buttons.ndim != 2 or env_buttons.shape[1] != N_ENV_BUTTONS or env_camera.shape != (len(env_buttons), 2):
            raise ValueError(
                f"expected env_buttons [n, {N_ENV_BUTTONS}] and env_camera [n, 2], "
                f"got {list(env_buttons.shape)} and {list(env_camera.shape)}"
            )
        if np.any((env_buttons != 0) & (env_buttons != 1)):
            raise ValueError("env_buttons must be 0 or 1")
        if not np.all(np.isfinite(env_camera)):
            raise ValueError("env_camera must be finite")
        self._buttons.append(env_buttons.astype(np.uint8))
        self._camera.append(env_camera)
        self._num_actions += len(env_buttons)

    def set_embeds(self, embeds: np.ndarray) -> None:
        """Set the MineCLIP embeddings: float32 [N, 512], rows < 15 NaN, row i >= 15 for frames i-15..i."""
        embeds = np.asarray(embeds, dtype=np.float32)
        errors = _check_embeds(embeds, "embeds")
        if errors:
            raise ValueError("; ".join(errors))
        self._embeds = embeds

    def set_idm_confidence(self, confidence: np.ndarray) -> None:
        """For actions labelled by the inverse dynamics model: float32 [N, 22], each chosen output's probability."""
        confidence = np.asarray(confidence, dtype=np.float32)
        errors = _check_optional_action_arrays({IDM_CONFIDENCE: confidence}, len(confidence))
        if errors:
            raise ValueError("; ".join(errors))
        self._idm_confidence = confidence

    def close(self) -> Path:
        """Finish every file, then atomically rename the directory to its final name; return that path."""
        if self._committed:
            return self.final_dir
        if self._done:
            raise ValueError(f"{self.final_dir}: this EpisodeWriter was aborted")
        try:
            self._commit()
        except BaseException:
            self.abort()
            raise
        self._done = self._committed = True
        return self.final_dir

    def _commit(self) -> None:
        """Write the remaining files, fsync, rename into place."""
        n = self._video.num_frames
        if n < MIN_FRAMES:
            raise ValueError(f"an episode needs at least {MIN_FRAMES} frames, got {n}")
        if self._embeds is None:
            raise ValueError("set_embeds() was never called")
        counts = {"frames": n, "actions": self._num_actions, "embeds": len(self._embeds)}
        if self._idm_confidence is not None:
            counts[IDM_CONFIDENCE] = len(self._idm_confidence)
        mismatch = _count_mismatch(counts)
        if mismatch:
            raise ValueError(mismatch[0])
        self._video.close()
        env_buttons = np.concatenate(self._buttons)
        env_camera = np.concatenate(self._camera)
        agent_buttons, agent_camera = env_arrays_to_joint(env_buttons, env_camera)
        optional = {} if self._idm_confidence is None else {IDM_CONFIDENCE: self._idm_confidence}
        with open(self.temp_dir / ACTIONS_FILE, "wb") as file:
            np.savez(
                file,
                env_buttons=env_buttons,
                env_camera=env_camera,
                agent_buttons=agent_buttons.astype(np.int16),
                agent_camera=agent_camera.astype(np.int16),
                **optional,
            )
        with open(self.temp_dir / EMBEDS_FILE, "wb") as file:
            np.save(file, self._embeds, allow_pickle=False)
        files = {}
        for name in (FRAMES_FILE, ACTIONS_FILE, EMBEDS_FILE):
            _fsync_path(self.temp_dir / name)
            files[name] = {"bytes": (self.temp_dir / name).stat().st_size, "sha256": _sha256(self.temp_dir / name)}
        metadata = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "num_frames": n,
            "fps": FPS,
            "frame_size": [FRAME_SIZE, FRAME_SIZE],
            "embed_start": EMBED_START,
            "env_button_names": list(ENV_BUTTONS),
            "source": self._source,
            "conversion": self._conversion,
            "video": {"codec": "h264", "encoder": "libx264", "pix_fmt": "yuv420p", "crf": self._crf, "gop": self._gop},
            "files": files,
            "versions": _versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **self._extra,
        }
        with open(self.temp_dir / METADATA_FILE, "w") as file:
            json.dump(metadata, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        _fsync_path(self.temp_dir)
        self._rename_into_place()

    def _rename_into_place(self) -> None:
        """Move the finished temporary directory to the final name (replacing the old one if asked)."""
        self._refuse_existing()
        aside = None
        if self.final_dir.exists():
            # rename() cannot replace a non-empty directory: move the old one aside first, so that
            # at every instant the final name is either absent or a complete episode.
            aside = self.final_dir.parent / f".{self.final_dir.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.rename(self.final_dir, aside)
        os.rename(self.temp_dir, self.final_dir)
        self._cleanup.detach()
        _fsync_path(self.final_dir.parent)
        if aside is not None:
            shutil.rmtree(aside)

    def abort(self) -> None:
        """Discard everything written so far."""
        if self._done:
            return
        self._done = True
        self._video.abort()
        self._cleanup()

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type: type | None, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ----------------------------------------------------------------------------------------------
# Validation.


@dataclass
class ValidationResult:
    """What validate_episode found: ok when errors is empty."""

    path: Path
    errors: list[str]
    num_frames: int | None = None
    layout: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def __bool__(self) -> bool:
        return self.ok

    def line(self) -> str:
        """One line for the command line: 'OK   <path>  N frames' or 'FAIL <path>: <what is wrong>'."""
        if self.ok:
            return f"OK   {self.path}  {self.num_frames} frames"
        return f"FAIL {self.path}: {'; '.join(self.errors)}"


def validate_episode(
    path: str | os.PathLike, trust_legacy_pickle: bool = False, decode_frames: bool = True
) -> ValidationResult:
    """Check every invariant of an episode directory; decode_frames=False skips decoding the video."""
    path = Path(path)
    try:
        layout = detect_layout(path)
    except (EpisodeFormatError, FileNotFoundError) as error:
        return ValidationResult(path, [_strip_path(error, path)])
    if layout == LEGACY_LAYOUT:
        if not trust_legacy_pickle:
            return ValidationResult(path, [_strip_path(_refuse_legacy(path), path)], layout=layout)
        errors, num_frames = _validate_legacy(path, decode_frames)
    else:
        errors, num_frames = _validate_toolkit(path, decode_frames)
    return ValidationResult(path, errors, num_frames, layout)


def _strip_path(error: BaseException, path: Path) -> str:
    """An error message without the leading '<path>: ' (the result line names the path already)."""
    message = str(error)
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _validate_toolkit(path: Path, decode_frames: bool) -> tuple[list[str], int | None]:
    """All checks of our format; returns (errors, num_frames from metadata)."""
    errors: list[str] = []
    missing = [name for name in TOOLKIT_FILES if not (path / name).exists()]
    if missing:
        errors.append(f"missing {', '.join(missing)}")
    counts: dict[str, int | None] = {}

    metadata: dict | None = None
    num_frames = None
    if (path / METADATA_FILE).exists():
        try:
            metadata = _read_json(path / METADATA_FILE)
            _check_format_tag(metadata, path)
        except EpisodeFormatError as error:
            errors.append(_strip_path(error, path))
            metadata = None
    if metadata is not None:
        errors += _check_metadata(metadata)
        if isinstance(metadata.get("num_frames"), int):
            num_frames = counts["metadata num_frames"] = metadata["num_frames"]
            if num_frames < MIN_FRAMES:
                errors.append(f"{num_frames} frames; an episode needs at least {MIN_FRAMES} (one full MineCLIP window)")

    if (path / ACTIONS_FILE).exists():
        try:
            arrays = _load_actions_npz(path / ACTIONS_FILE)
            action_errors = _check_action_arrays(arrays)
            errors += action_errors
            if "env_buttons" in arrays:
                counts[ACTIONS_FILE] = _rows(arrays["env_buttons"])
        except EpisodeFormatError as error:
            errors.append(str(error))

    errors += _check_embeds_video_counts(
        path, EMBEDS_FILE, lambda: _load_embeds_npy(path / EMBEDS_FILE, mmap=True), counts, decode_frames
    )
    if metadata is not None:  # last: the errors above say what changed, this one only that it did
        errors += _check_file_records(path, metadata.get("files"))
    return errors, num_frames


def _check_embeds_video_counts(
    path: Path, embeds_name: str, load_embeds: Callable[[], np.ndarray], counts: dict[str, int | None], decode_frames: bool
) -> list[str]:
    """Checks both layouts share: the embeddings file, the video, and that all counts agree."""
    errors: list[str] = []
    if (path / embeds_name).exists():
        try:
            embeds = load_embeds()
            errors += _check_embeds(embeds, embeds_name)
            counts[embeds_name] = _rows(embeds)
        except EpisodeFormatError as error:
            errors.append(str(error))
    if (path / FRAMES_FILE).exists():
        video_errors, counts[FRAMES_FILE] = _check_video(path / FRAMES_FILE, decode_frames)
        errors += video_errors
    return errors + _count_mismatch(counts)


def _check_metadata(metadata: Mapping) -> list[str]:
    """Fields and fixed values of metadata.json."""
    errors = []
    for name, kind in _METADATA_TYPES.items():
        if name not in metadata:
            errors.append(f"{METADATA_FILE}: missing field {name!r}")
        elif not isinstance(metadata[name], kind) or isinstance(metadata[name], bool):
            errors.append(f"{METADATA_FILE}: field {name!r} has the wrong type ({type(metadata[name]).__name__})")
    expected = {"fps": FPS, "frame_size": [FRAME_SIZE, FRAME_SIZE], "embed_start": EMBED_START}
    for name, value in expected.items():
        if name in metadata and metadata[name] != value:
            errors.append(f"{METADATA_FILE}: {name} is {metadata[name]!r}, expected {value!r}")
    names = metadata.get("env_button_names")
    if names is not None and names != list(ENV_BUTTONS):
        errors.append(f"{METADATA_FILE}: env_button_names differ from this toolkit's ENV_BUTTONS order")
    return errors


def _check_file_records(path: Path, files: Any) -> list[str]:
    """Sizes and sha256 of the data files against the record in metadata.json."""
    if not isinstance(files, dict):
        return []  # already reported as a missing/mistyped field
    errors = []
    for name in (FRAMES_FILE, ACTIONS_FILE, EMBEDS_FILE):
        record = files.get(name)
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
            errors.append(f"{METADATA_FILE}: no size/sha256 record for {name}")
            continue
        if not (path / name).exists():
            continue  # reported as missing
        size = (path / name).stat().st_size
        if size != record.get("bytes"):
            errors.append(f"{name}: {size} bytes, metadata.json recorded {record.get('bytes')} (truncated or replaced)")
        elif _sha256(path / name) != record["sha256"]:
            errors.append(f"{name}: sha256 differs from metadata.json (corrupt or modified after writing)")
    return errors


def _check_video(video_path: Path, decode_frames: bool) -> tuple[list[str], int | None]:
    """Frame count, size and frame rate of frames.mp4; decodes every frame when asked."""
    name = video_path.name
    try:
        with VideoReader(video_path) as reader:
            count, height, width, fps = reader.num_frames, reader.height, reader.width, reader.fps
        if decode_frames:
            count, height, width = verify_video(video_path)
    except VideoError as error:
        return [f"{name}: {_strip_path(error, video_path)}"], None
    errors = []
    if (height, width) != (FRAME_SIZE, FRAME_SIZE):
        errors.append(f"{name}: frames are {height}x{width}, expected {FRAME_SIZE}x{FRAME_SIZE}")
    if abs(fps - FPS) > 1e-6:
        errors.append(f"{name}: {fps:g} fps, expected {FPS}")
    return errors, count


def _validate_legacy(path: Path, decode_frames: bool) -> tuple[list[str], int | None]:
    """All checks of the original STEVE-1 layout (trusted pickles)."""
    errors: list[str] = []
    missing = [name for name in LEGACY_FILES if not (path / name).exists()]
    if missing:
        errors.append(f"missing {', '.join(missing)}")
    counts: dict[str, int | None] = {}
    num_frames = None
    if (path / LEGACY_LEN_FILE).exists():
        try:
            num_frames = counts[LEGACY_LEN_FILE] = _legacy_num_frames(path)
            if num_frames < MIN_FRAMES:
                errors.append(f"{num_frames} frames; an episode needs at least {MIN_FRAMES} (one full MineCLIP window)")
        except EpisodeFormatError as error:
            errors.append(str(error))
    if (path / METADATA_FILE).exists():
        try:
            _read_json(path / METADATA_FILE)
        except EpisodeFormatError as error:
            errors.append(str(error))
    if (path / LEGACY_ACTIONS_FILE).exists():
        try:
            arrays = _legacy_actions(path)
            errors += _check_action_arrays(arrays, check_joint=False)  # joints derive from the env arrays
            counts[LEGACY_ACTIONS_FILE] = len(arrays["env_buttons"])
        except EpisodeFormatError as error:
            errors.append(str(error))
    errors += _check_embeds_video_counts(path, LEGACY_EMBEDS_FILE, lambda: _legacy_embeds(path), counts, decode_frames)
    return errors, num_frames


# ----------------------------------------------------------------------------------------------
# Command line.


def _is_episode_like(path: Path) -> bool:
    """True when a directory holds episode files (or is a writer leftover) rather than episodes."""
    names = set(TOOLKIT_FILES) | set(LEGACY_FILES)
    return is_leftover_dir(path) or any((path / name).exists() for name in names)


def find_episode_dirs(path: str | os.PathLike) -> list[Path]:
    """The episode directories a PATH argument means: itself, or the subdirectories of a dataset."""
    path = Path(path)
    if not path.is_dir() or _is_episode_like(path):
        return [path]
    # Writer leftovers are listed so that they are reported; other hidden folders are not episodes.
    return sorted(
        child for child in path.iterdir()
        if child.is_dir() and (not child.name.startswith(".") or is_leftover_dir(child))
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: validate episodes, one line each; exit status 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--validate", nargs="+", required=True, metavar="PATH",
                        help="episode directories, or dataset directories whose subdirectories are episodes")
    parser.add_argument("--trust_legacy_pickle", action="store_true",
                        help="also read episodes in the original STEVE-1 pickle layout (pickle can run code: "
                             "only for files you trust)")
    parser.add_argument("--no_decode", action="store_true",
                        help="skip decoding every video frame (header counts and checksums are still checked)")
    args = parser.parse_args(argv)
    failed = 0
    for given in args.validate:
        episodes = find_episode_dirs(given)
        if not episodes:
            print(f"FAIL {given}: no episode directories found", flush=True)
            failed += 1
        for episode_dir in episodes:
            result = validate_episode(episode_dir, args.trust_legacy_pickle, decode_frames=not args.no_decode)
            print(result.line(), flush=True)
            failed += not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
