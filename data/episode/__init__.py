"""Episode directories: the format (`format`), writing (`writer`), loading (`reader`), checking (`validate`)
and the original STEVE-1 pickle layout (`legacy`). The names below are the package's public API."""

from data.episode.format import (
    ACTIONS_FILE,
    EMBED_DIM,
    EMBED_START,
    EMBEDS_FILE,
    ENV_CAMERA_LIMIT_DEGREES,
    FORMAT_NAME,
    FORMAT_VERSION,
    FPS,
    FRAME_SIZE,
    FRAMES_FILE,
    IDM_CONFIDENCE,
    LEGACY_ACTIONS_FILE,
    LEGACY_EMBEDS_FILE,
    LEGACY_LEN_FILE,
    METADATA_FILE,
    MIN_FRAMES,
    EpisodeFormatError,
    detect_layout,
    is_leftover_dir,
    leftover_writer_pid,
)
from data.episode.reader import Episode, load_episode
from data.episode.validate import ValidationResult, find_episode_dirs, validate_episode
from data.episode.writer import EpisodeExistsError, EpisodeWriter, remove_dead_writer_leftovers

__all__ = [
    "ACTIONS_FILE", "EMBED_DIM", "EMBED_START", "EMBEDS_FILE", "ENV_CAMERA_LIMIT_DEGREES", "FORMAT_NAME",
    "FORMAT_VERSION", "FPS", "FRAME_SIZE", "FRAMES_FILE", "IDM_CONFIDENCE", "LEGACY_ACTIONS_FILE", "LEGACY_EMBEDS_FILE",
    "LEGACY_LEN_FILE", "METADATA_FILE", "MIN_FRAMES", "EpisodeFormatError", "detect_layout", "is_leftover_dir",
    "leftover_writer_pid", "Episode", "load_episode", "ValidationResult", "find_episode_dirs", "validate_episode",
    "EpisodeExistsError", "EpisodeWriter", "remove_dead_writer_leftovers",
]
