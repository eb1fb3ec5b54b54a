"""Loading an episode directory (our format, or the original layout when trusted) as one `Episode`."""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.episode.format import (
    ACTIONS_FILE,
    EMBED_DIM,
    EMBEDS_FILE,
    FRAMES_FILE,
    IDM_CONFIDENCE,
    LEGACY_FILES,
    LEGACY_LAYOUT,
    METADATA_FILE,
    TOOLKIT_FILES,
    EpisodeFormatError,
    check_action_arrays,
    check_format_tag,
    count_mismatch,
    detect_layout,
    read_json,
    rows,
)
from data.episode.legacy import legacy_actions, legacy_embeds, legacy_num_frames, refuse_legacy
from data.video_io import VideoReader


def load_actions_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of actions.npz (no pickle)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise EpisodeFormatError(f"{ACTIONS_FILE}: unreadable ({type(error).__name__}: {error})") from error


def load_embeds_npy(path: Path, mmap: bool) -> np.ndarray:
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
    """Load an episode directory of our format, or of the original layout when trusted.

    Raises EpisodeFormatError (message starts with the path) for anything unreadable or inconsistent in
    shapes and counts; `data.episode.validate.validate_episode` checks the values too.
    """
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
            raise refuse_legacy(path)
        missing = [name for name in LEGACY_FILES if not (path / name).exists()]
        if missing:
            raise EpisodeFormatError(f"{path}: missing {', '.join(missing)}")
        num_frames = legacy_num_frames(path)
        metadata = read_json(path / METADATA_FILE)
        arrays = legacy_actions(path)
        embeds = legacy_embeds(path)
    else:
        missing = [name for name in TOOLKIT_FILES if not (path / name).exists()]
        if missing:
            raise EpisodeFormatError(f"{path}: missing {', '.join(missing)}")
        metadata = read_json(path / METADATA_FILE)
        check_format_tag(metadata, path)
        num_frames = metadata.get("num_frames")
        if not isinstance(num_frames, int):
            raise EpisodeFormatError(f"{path}: {METADATA_FILE} has no integer num_frames")
        arrays = load_actions_npz(path / ACTIONS_FILE)
        embeds = load_embeds_npy(path / EMBEDS_FILE, mmap_embeds)
        errors = check_action_arrays(arrays, check_joint=False)
        if errors:
            raise EpisodeFormatError(f"{path}: {'; '.join(errors)}")
    # Cheap consistency checks only (shapes and counts); validate_episode checks the values.
    if embeds.ndim != 2 or embeds.shape[1] != EMBED_DIM or embeds.dtype != np.float32:
        raise EpisodeFormatError(f"{path}: embeddings are {embeds.dtype} {list(embeds.shape)}, expected float32 [N, 512]")
    counts = {"metadata": num_frames, "actions": rows(arrays["env_buttons"]), "embeds": rows(embeds)}
    mismatch = count_mismatch(counts)
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
