"""Writing one episode: a hidden temporary directory, renamed into place only when every file is complete."""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import weakref
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Mapping

import av
import cv2
import numpy as np

from toolkit_utils.file_hashes import file_sha256
from data.episode.format import (
    ACTIONS_FILE,
    EMBED_START,
    EMBEDS_FILE,
    ENV_CAMERA_LIMIT_DEGREES,
    FORMAT_NAME,
    FORMAT_VERSION,
    FPS,
    FRAME_SIZE,
    FRAMES_FILE,
    IDM_CONFIDENCE,
    METADATA_FILE,
    METADATA_TYPES,
    MIN_FRAMES,
    N_ENV_BUTTONS,
    WRITER_METADATA_FIELDS,
    check_embeds,
    check_optional_action_arrays,
    count_mismatch,
    leftover_writer_pid,
)
from data.video_io import DEFAULT_CRF, DEFAULT_GOP, VideoWriter
from vpt_model.action_space import ENV_BUTTONS, env_actions_to_arrays, env_arrays_to_joint


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


def _process_alive(pid: int) -> bool:
    """True when a process with this id runs on this machine (or exists but belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_writer_leftovers(directory: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """Delete the temporary directories that EpisodeWriters killed before close() left in `directory`.

    A leftover whose writer process still runs on this machine is kept (it may be writing now). Call this only
    while no other machine writes into `directory` (step 1 holds the directory's conversion lock).
    Returns (removed, kept).
    """
    removed, kept = [], []
    directory = Path(directory)
    if not directory.is_dir():
        return removed, kept
    for child in sorted(directory.iterdir()):
        pid = leftover_writer_pid(child)
        if pid is None or not child.is_dir():
            continue
        if pid != os.getpid() and _process_alive(pid):
            kept.append(child)
            continue
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
    return removed, kept


class EpisodeExistsError(FileExistsError):
    """The episode directory exists (before writing, or appeared while writing) and overwriting was not asked for."""


class EpisodeWriter:
    """Write one episode into a hidden temporary directory and rename it into place on close().

    The temporary directory is `.<name>.tmp-<pid>-<hex>` beside the final one; a writer killed before
    close() leaves it behind (`data.episode.format.is_leftover_dir`), never a partial episode.
    """

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
        clash = set(self._extra) & (set(METADATA_TYPES) | WRITER_METADATA_FIELDS)
        if clash:
            raise ValueError(f"extra_metadata may not set the format's own fields: {sorted(clash)}")
        json.dumps([self._source, self._conversion, self._extra])  # fail now, not after all the frames
        self._crf, self._gop = crf, gop
        self.final_dir.parent.mkdir(parents=True, exist_ok=True)
        self.temp_dir = self.final_dir.parent / f".{self.final_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        self.temp_dir.mkdir()
        # Removes the temporary directory if this writer is dropped without close() or abort().
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.temp_dir), True)
        # One encoder thread: a 128x128 frame is too little work to share (as fast as x264's default threads here,
        # ~1,100 frames/s), the bytes then do not depend on the machine, and `--jobs` processes do not oversubscribe
        # the cores with x264's ~1.5 threads per core each.
        self._video = VideoWriter(self.temp_dir / FRAMES_FILE, fps=FPS, crf=crf, gop=gop, threads=1)
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
        """Raise EpisodeExistsError if the final directory exists and overwriting was not asked for."""
        if self.final_dir.exists() and not self._overwrite:
            raise EpisodeExistsError(f"{self.final_dir}: already exists; pass overwrite=True to replace it")

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
        """Append env actions as arrays: buttons [n, 23] 0/1 in ENV_BUTTONS order, camera [n, 2] degrees.

        Raises ValueError for other shapes, buttons other than 0/1, and cameras that are not finite or lie
        outside the MineRL action space (+-180 degrees).
        """
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
        if np.any(np.abs(env_camera) > ENV_CAMERA_LIMIT_DEGREES):
            raise ValueError(f"env_camera must lie within -{ENV_CAMERA_LIMIT_DEGREES:g}..{ENV_CAMERA_LIMIT_DEGREES:g} degrees")
        self._buttons.append(env_buttons.astype(np.uint8))
        self._camera.append(env_camera)
        self._num_actions += len(env_buttons)

    def set_embeds(self, embeds: np.ndarray) -> None:
        """Set the MineCLIP embeddings: float32 [N, 512], rows < 15 NaN, row i >= 15 for frames i-15..i."""
        embeds = np.asarray(embeds, dtype=np.float32)
        errors = check_embeds(embeds, "embeds")
        if errors:
            raise ValueError("; ".join(errors))
        self._embeds = embeds

    def set_idm_confidence(self, confidence: np.ndarray) -> None:
        """For actions labelled by the inverse dynamics model: float32 [N, 22], each chosen output's probability."""
        confidence = np.asarray(confidence, dtype=np.float32)
        errors = check_optional_action_arrays({IDM_CONFIDENCE: confidence}, len(confidence))
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
        mismatch = count_mismatch(counts)
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
            files[name] = {"bytes": (self.temp_dir / name).stat().st_size, "sha256": file_sha256(self.temp_dir / name)}
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
