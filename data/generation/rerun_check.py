"""Re-running step 1: an episode that exists is skipped only when it was made the way this run would make it.

Step 1 skips recordings whose episode directory exists (re-runs are cheap and resume where they stopped). A
re-run with other settings must not keep the old episodes silently, so before skipping, how they were made
(their metadata.json: data.episode.provenance) is compared with this run:
- Settings of the whole run, checked before any work for every episode in each output directory: the MineCLIP
  weights (the demo flag; a weights file by sha256) and the labelling rules (camera_labels, null_filter). An
  output directory is one dataset to step 2, so a difference refuses the run (one line, exit status 2) naming
  the episodes and what differs: converting on would leave the old episodes as they are, mixed with new ones
  made another way. Reading each episode's metadata.json is cheap (~1 ms), so refusing up front costs nothing.
- The recording an episode was made from, per recording, once the recordings are known (an index is read during
  the run): a contractor recording's relpath; a custom recording's video (by size in bytes, else by path),
  actions file (by size) and whether the IDM labelled it. A different recording fails alone (one FAIL line
  naming the episode, what differs and the fix); the other recordings convert.
Nothing is overwritten: the fix is to delete those episodes (to convert them again) or to convert into another
output directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from data.episode import find_episode_dirs, is_leftover_dir
from data.episode.provenance import UNKNOWN, MineCLIPWeights, Provenance, read_provenance
from data.generation.conversion_jobs import GoalEncoderSpec
from data.generation.episode_conversion import ConversionOptions
from toolkit_utils import cli

LABEL_SETTINGS = ("camera_labels", "null_filter")
NAMES_SHOWN = 3  # episodes named per group in a refusal; the rest are counted


def run_provenance(spec: GoalEncoderSpec, options: ConversionOptions) -> Provenance:
    """How this run makes episodes, in the terms their metadata records."""
    if spec.demo_random_mineclip:
        weights = MineCLIPWeights(demo_random_weights=True)
    else:
        path = os.path.abspath(spec.mineclip_weights) if spec.mineclip_weights else None
        weights = MineCLIPWeights(False, path, spec.mineclip_sha256)
    return Provenance(options.camera_labels, options.null_filter, weights)


def setting_differences(made: Provenance, wanted: Provenance) -> list[str]:
    """What differs between how an episode was made and this run, e.g. ['camera_labels truncated, this run float']."""
    differences = []
    if made.mineclip.differs_from(wanted.mineclip):
        differences.append(f"MineCLIP {made.mineclip}, this run {wanted.mineclip}")
    for name in LABEL_SETTINGS:
        old, new = getattr(made, name), getattr(wanted, name)
        if UNKNOWN not in (old, new) and old != new:
            differences.append(f"{name} {old}, this run {new}")
    return differences


def check_output_directories(directories: Mapping[str, str | os.PathLike], wanted: Provenance) -> None:
    """Refuse (cli.SettingError, one line) when an output directory holds episodes made with other settings.

    `directories` maps the setting that names each directory (e.g. "--output_dir") to it; a directory given
    under two settings is checked once. Episodes whose metadata says nothing are not refused (unknown).
    """
    seen = set()
    for setting, directory in directories.items():
        path = Path(directory)
        if not path.is_dir() or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        episodes = [p for p in find_episode_dirs(path) if p != path and not is_leftover_dir(p)]
        groups: dict[str, list[str]] = {}
        for episode in episodes:
            differences = setting_differences(read_provenance(episode), wanted)
            if differences:
                groups.setdefault("; ".join(differences), []).append(episode.name)
        if groups:
            count = sum(len(names) for names in groups.values())
            described = "; ".join(f"{_names(names)}: {differences}" for differences, names in groups.items())
            cli.refuse(setting, directory, f"{count} of its {len(episodes)} episodes were made with other settings "
                       f"than this run's ({described}), and a re-run would keep them as they are",
                       f"delete those episodes to convert them again with these settings, or choose another {setting}")


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def recording_difference(episode: str | os.PathLike, expected: Mapping[str, Any]) -> str | None:
    """Why the existing `episode` was made from another recording than `expected` (the source this run would
    record), as 'it was made from ...; this run's ...'; None when it is the same recording or the metadata
    does not say."""
    made = read_provenance(episode).source
    kind = made.get("kind")
    if kind is None:
        return None
    if kind != expected.get("kind"):
        return f"it was made from a {kind} recording; this run's is a {expected.get('kind')} recording"
    if kind == "contractor":
        if made.get("relpath") != expected.get("relpath"):
            return f"it was made from the recording {made.get('relpath')}; this run's is {expected.get('relpath')}"
        return None
    if made.get("actions") in ("recorded", "idm") and made.get("actions") != expected.get("actions"):
        how = {"recorded": "its actions were recorded (actions.jsonl)", "idm": "its actions were labelled by the IDM"}
        now = {"recorded": "this run's recording has actions.jsonl", "idm": "this run's recording has no actions.jsonl"}
        return f"{how[made['actions']]}; {now[expected.get('actions')]}"
    for path_field, size_field in (("video", "video_bytes"), ("actions_file", "actions_bytes")):
        if expected.get(path_field) is None or made.get(path_field) is None:
            continue
        if isinstance(made.get(size_field), int) and isinstance(expected.get(size_field), int):
            same = made[size_field] == expected[size_field]
        else:  # written before sizes were recorded: the path is all there is
            same = Path(str(made[path_field])).resolve() == Path(str(expected[path_field])).resolve()
        if not same:
            return (f"it was made from {_file(made, path_field, size_field)}; this run's is "
                    f"{_file(expected, path_field, size_field)}")
    return None


def _file(source: Mapping[str, Any], path_field: str, size_field: str) -> str:
    size = source.get(size_field)
    return f"{source[path_field]}" + (f" ({size} bytes)" if isinstance(size, int) else "")


def existing_episode_line(episode: str | os.PathLike, difference: str) -> str:
    """The FAIL message for a recording whose episode exists but was made from another recording."""
    return (f"{episode} exists but {difference}; it is kept as it is: delete it to convert this recording again, "
            "or convert into another output directory")
