"""How an episode was made, as its metadata.json records it: labelling rules, MineCLIP weights, recording.

Step 1 compares this with its own settings before it skips an episode that exists (a re-run must not keep an
episode made another way without saying so); step 2 reads the labelling rules and the demo flag before it
samples. What is read:
- labelling rules: `conversion.camera_labels` ("truncated" or "float"; episodes written before that setting
  carry `truncate_camera`, a bool) and `conversion.null_filter` ("env", "agent" or "none"). The original
  STEVE-1 pickle layout was made by the original rules (truncated, env).
- MineCLIP: `source.mineclip`: `demo_random_weights` (True: random weights, a pipeline demo whose goals mean
  nothing), `weights` (absolute path) and `sha256` (the file's identity; older episodes name the path only).
- the recording: the rest of `source` (step 1 compares it per recording: data.generation.rerun_check).
Anything the metadata does not say is UNKNOWN (or None), and unknown never counts as a difference.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from data.episode.format import LEGACY_LAYOUT, METADATA_FILE, EpisodeFormatError, detect_layout

UNKNOWN = "unknown"
ORIGINAL_LABELS = ("truncated", "env")  # the rules the released steve1.weights' data was made with (SPEC section 5)


@dataclasses.dataclass(frozen=True)
class MineCLIPWeights:
    """The MineCLIP that embedded an episode's goals (or that a conversion run will use)."""

    demo_random_weights: bool | None = None  # None: not recorded
    path: str | None = None  # absolute path of attn.pth
    sha256: str | None = None

    def differs_from(self, other: "MineCLIPWeights") -> bool:
        """True when both say enough to tell and they are other weights: demo against real, or another file.

        The file is compared by sha256 when both know it, else by path.
        """
        if self.demo_random_weights is None or other.demo_random_weights is None:
            return False
        if self.demo_random_weights or other.demo_random_weights:
            return self.demo_random_weights != other.demo_random_weights
        if self.sha256 and other.sha256:
            return self.sha256 != other.sha256
        return bool(self.path and other.path and self.path != other.path)

    def __str__(self) -> str:
        if self.demo_random_weights is None:
            return "unknown weights"
        if self.demo_random_weights:
            return "random demo weights"
        return f"{self.path or 'an unnamed file'}" + (f" (sha256 {self.sha256[:12]}...)" if self.sha256 else "")


@dataclasses.dataclass(frozen=True)
class Provenance:
    """How one episode was made (see the module docstring for where each field comes from)."""

    camera_labels: str = UNKNOWN
    null_filter: str = UNKNOWN
    mineclip: MineCLIPWeights = MineCLIPWeights()
    source: dict[str, Any] = dataclasses.field(default_factory=dict)


def read_provenance(path: str | os.PathLike, layout: str | None = None) -> Provenance:
    """How the episode at `path` was made; everything UNKNOWN when its metadata cannot be read (validation says why)."""
    path = Path(path)
    try:
        layout = layout or detect_layout(path)
    except (EpisodeFormatError, OSError):
        return Provenance()
    if layout == LEGACY_LAYOUT:
        # Made by the original converter with the real MineCLIP; which file is not recorded.
        return Provenance(*ORIGINAL_LABELS, MineCLIPWeights(demo_random_weights=False))
    try:
        metadata = json.loads((path / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return Provenance()
    if not isinstance(metadata, dict):
        return Provenance()
    conversion = metadata.get("conversion") if isinstance(metadata.get("conversion"), dict) else {}
    source = metadata.get("source") if isinstance(metadata.get("source"), dict) else {}
    camera = conversion.get("camera_labels")
    if camera is None and isinstance(conversion.get("truncate_camera"), bool):
        camera = "truncated" if conversion["truncate_camera"] else "float"
    mineclip = source.get("mineclip") if isinstance(source.get("mineclip"), dict) else {}
    demo = mineclip.get("demo_random_weights")
    weights = MineCLIPWeights(demo if isinstance(demo, bool) else None, _text(mineclip.get("weights")),
                              _text(mineclip.get("sha256")))
    return Provenance(str(camera or UNKNOWN), str(conversion.get("null_filter") or UNKNOWN), weights, source)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
