"""Test helper: small recordings (video + jsonl) whose frames say which frame they are.

`write_index_video` writes frames made by episode_factory.index_frames scaled up to the recording size, so
after a conversion (resize to 128x128, h264) `episode_factory.frame_indices` reads back which source frame
every episode frame came from. `contractor_line` builds one recorder line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from data.video_io import VideoWriter
from episode_factory import index_frames


def index_video_frames(n: int, size: tuple[int, int] = (640, 360), start: int = 0) -> np.ndarray:
    """RGB uint8 [n, H, W, 3] frames; frame j encodes start + j (width, height = size)."""
    small = index_frames(range(start, start + n))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_NEAREST) for f in small])


def write_index_video(path: Path, n: int, fps: int = 20, size: tuple[int, int] = (640, 360)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=fps) as writer:
        for frame in index_video_frames(n, size):
            writer.write(frame)
    return path


def contractor_line(keys: Sequence[str] = ("key.keyboard.w",), buttons: Sequence[int] = (), dx: float = 0.0,
                    dy: float = 0.0, hotbar: int | None = 0, gui: bool = False, x: float = 640.0, y: float = 360.0,
                    new_buttons: Sequence[int] = ()) -> dict[str, Any]:
    line = {
        "mouse": {"x": x, "y": y, "dx": dx, "dy": dy, "buttons": list(buttons), "newButtons": list(new_buttons),
                  "dwheel": 0},
        "keyboard": {"keys": list(keys), "newKeys": []},
        "isGuiOpen": gui,
        "hotbar": hotbar,
        "yaw": 0.0,
        "pitch": 0.0,
        "tick": 0,
    }
    if hotbar is None:
        del line["hotbar"]
    return line


def jsonl_bytes(lines: Sequence[Any]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()
