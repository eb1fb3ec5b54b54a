"""The JSON record written beside every rollout video: what was run, with which files, and how it ended.

`<name>.mp4` gets `<name>.json` (written after the video is complete, so a record means a finished
rollout). Fields:
    format, format_version        "steve1-toolkit-rollout", 1
    video                         the mp4's file name (null when no attempt finished)
    prompt | visual_prompt        the text prompt, or {path, sha256} of the visual prompt file
    prompt_source                 "--custom_text_prompt", "--visual_prompt" or "<prompts file>:<line>"
    cond_scale, cond_scale_source classifier-free guidance scale, and "--cond_scale" or the prompt kind's default
    seed, seed_source             the episode's world and agent seed, and where it came from
    deterministic_prior           whether the prior used z = 0
    weights                       label, and {path, bytes, sha256} of in_model, in_weights, prior_weights, mineclip_weights
    environment                   the environment and its settings
    max_steps, steps              the step budget and the steps taken (= frames in the video)
    ended                         "max_steps", "env_done" (the environment ended the episode) or "env_died"
    env_restarts, env_failures    how often the environment was replaced, and each failure (attempt, step, error)
    wall_time_s                   seconds from the first reset to the last frame of the attempt that counted
    programmatic_metrics          STEVE-1's metrics (rollout.programmatic_metrics) when the env provides them, else null
    video_fps, frame_size, frames, prompt_overlay, device, created
A re-run skips rollouts whose record has the same settings (SETTING_FIELDS) and refuses to overwrite one
made with other settings.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any, Mapping

from toolkit_utils.atomic_files import atomic_write_bytes

RECORD_FORMAT = "steve1-toolkit-rollout"
RECORD_FORMAT_VERSION = 1
# the fields that define a rollout: equal in an existing record -> the rollout is done; different -> refused
SETTING_FIELDS = ("prompt", "visual_prompt", "cond_scale", "deterministic_prior", "weights", "environment",
                  "max_steps", "prompt_overlay")


def record_path(video_path: str | os.PathLike) -> Path:
    """The record beside a video: x.mp4 -> x.json."""
    return Path(video_path).with_suffix(".json")


def read_record(path: str | os.PathLike) -> dict | None:
    """The record at `path`, or None when there is none; ValueError naming the file when it is not a record."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable rollout record ({error})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path} is not a rollout record (no format {RECORD_FORMAT!r})")
    return record


def write_record(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Write a record atomically, adding format, format_version and created (UTC)."""
    full = {"format": RECORD_FORMAT, "format_version": RECORD_FORMAT_VERSION, **record,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_bytes(path, (json.dumps(full, indent=1) + "\n").encode())


def _without_paths(value: Any) -> Any:
    """A setting with every file's "path" left out: the same file moved elsewhere is the same setting."""
    if isinstance(value, Mapping):
        return {k: _without_paths(v) for k, v in value.items() if k != "path"}
    return value


def settings_differences(existing: Mapping[str, Any], planned: Mapping[str, Any], seed_given: bool) -> list[str]:
    """Names of the settings in which an existing record differs from a planned rollout (files compared by
    content; the seed counts only when it was given: without --seed every run draws new ones)."""
    fields = SETTING_FIELDS + (("seed",) if seed_given else ())
    return [name for name in fields if _without_paths(existing.get(name)) != _without_paths(planned.get(name))]
