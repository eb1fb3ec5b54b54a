"""Checking episodes: every invariant of the format, one result line per episode; the `--validate` command.

    .venv/bin/python data/EpisodeStorage.py --validate PATH [PATH ...] [--trust_legacy_pickle] [--no_decode]

PATH is an episode directory or a dataset directory of episodes. A failed episode's line names the episode,
the file and the row: `FAIL data/dataset_contractor/x: mineclip_embeds.npy: 1 row(s) from frame 15 on are
not finite (NaN/inf), first at frame 20`. Exit status 1 when any episode failed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from toolkit_utils.file_hashes import file_sha256
from data.episode.format import (
    ACTIONS_FILE,
    EMBED_START,
    EMBEDS_FILE,
    FPS,
    FRAME_SIZE,
    FRAMES_FILE,
    LEGACY_ACTIONS_FILE,
    LEGACY_EMBEDS_FILE,
    LEGACY_FILES,
    LEGACY_LAYOUT,
    LEGACY_LEN_FILE,
    METADATA_FILE,
    METADATA_TYPES,
    MIN_FRAMES,
    TOOLKIT_FILES,
    EpisodeFormatError,
    check_action_arrays,
    check_embeds,
    check_format_tag,
    count_mismatch,
    detect_layout,
    is_leftover_dir,
    read_json,
    rows,
)
from data.episode.legacy import legacy_actions, legacy_embeds, legacy_num_frames, refuse_legacy
from data.episode.reader import load_actions_npz, load_embeds_npy
from data.video_io import VideoError, VideoReader, verify_video
from toolkit_utils import cli
from vpt_model.action_space import ENV_BUTTONS


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
            return ValidationResult(path, [_strip_path(refuse_legacy(path), path)], layout=layout)
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
            metadata = read_json(path / METADATA_FILE)
            check_format_tag(metadata, path)
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
            arrays = load_actions_npz(path / ACTIONS_FILE)
            errors += check_action_arrays(arrays)
            if "env_buttons" in arrays:
                counts[ACTIONS_FILE] = rows(arrays["env_buttons"])
        except EpisodeFormatError as error:
            errors.append(str(error))

    errors += _check_embeds_video_counts(
        path, EMBEDS_FILE, lambda: load_embeds_npy(path / EMBEDS_FILE, mmap=True), counts, decode_frames
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
            errors += check_embeds(embeds, embeds_name)
            counts[embeds_name] = rows(embeds)
        except EpisodeFormatError as error:
            errors.append(str(error))
    if (path / FRAMES_FILE).exists():
        video_errors, counts[FRAMES_FILE] = _check_video(path / FRAMES_FILE, decode_frames)
        errors += video_errors
    return errors + count_mismatch(counts)


def _check_metadata(metadata: Mapping) -> list[str]:
    """Fields and fixed values of metadata.json."""
    errors = []
    for name, kind in METADATA_TYPES.items():
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
        elif file_sha256(path / name) != record["sha256"]:
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
            num_frames = counts[LEGACY_LEN_FILE] = legacy_num_frames(path)
            if num_frames < MIN_FRAMES:
                errors.append(f"{num_frames} frames; an episode needs at least {MIN_FRAMES} (one full MineCLIP window)")
        except EpisodeFormatError as error:
            errors.append(str(error))
    if (path / METADATA_FILE).exists():
        try:
            read_json(path / METADATA_FILE)
        except EpisodeFormatError as error:
            errors.append(str(error))
    if (path / LEGACY_ACTIONS_FILE).exists():
        try:
            arrays = legacy_actions(path)
            # joints derive from the env arrays here, so only the env arrays' values are checked
            errors += check_action_arrays(arrays, check_joint=False, name=LEGACY_ACTIONS_FILE)
            counts[LEGACY_ACTIONS_FILE] = len(arrays["env_buttons"])
        except EpisodeFormatError as error:
            errors.append(str(error))
    errors += _check_embeds_video_counts(path, LEGACY_EMBEDS_FILE, lambda: legacy_embeds(path), counts, decode_frames)
    return errors, num_frames


def _is_episode_like(path: Path) -> bool:
    """True when a directory holds episode files (or is a writer leftover) rather than episodes."""
    names = set(TOOLKIT_FILES) | set(LEGACY_FILES)
    return is_leftover_dir(path) or any((path / name).exists() for name in names)


def find_episode_dirs(path: str | os.PathLike) -> list[Path]:
    """The episode directories a PATH argument means: itself, or the subdirectories of a dataset.

    Writer leftovers are listed so that they are reported; other hidden folders are not episodes.
    """
    path = Path(path)
    if not path.is_dir() or _is_episode_like(path):
        return [path]
    return sorted(
        child for child in path.iterdir()
        if child.is_dir() and (not child.name.startswith(".") or is_leftover_dir(child))
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: validate episodes, one line each; exit status 1 if any failed."""
    parser = cli.ArgumentParser(description=__doc__)
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
