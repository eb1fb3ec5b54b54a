"""The GUI mouse cursor drawn onto contractor frames while a GUI (inventory, crafting) is open.

The recordings show no cursor, so VPT's data loader (data_loader.py) and STEVE-1's converter
(steve1/data/utils/contractor.py) draw one before resizing; the released weights saw frames made that
way. This module draws the same pixels: the top-left 16x16 crop of VPT's
`cursors/mouse_cursor_white_16x16.png` (kept in assets/mouse_cursor_16x16_rgba.txt), tip at
(int(x * h / 720), int(y * h / 720)) on the h-pixel-high frame, alpha = A / 255 in float64 and
out = frame * (1 - alpha) + cursor * alpha truncated to uint8, as the original computes it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from data.generation.contractor_actions import RECORDING_HEIGHT_PX

CURSOR_FILE = Path(__file__).with_name("assets") / "mouse_cursor_16x16_rgba.txt"
CURSOR_SIZE = 16


@functools.lru_cache(maxsize=1)
def cursor_rgba() -> np.ndarray:
    """The cursor image, uint8 [16, 16, 4] RGBA (read-only); source and layout in CURSOR_FILE's header."""
    table = np.loadtxt(CURSOR_FILE, dtype=np.int64, comments="#")
    if table.shape != (4 * CURSOR_SIZE, CURSOR_SIZE) or table.min() < 0 or table.max() > 255:
        raise ValueError(f"{CURSOR_FILE}: expected four {CURSOR_SIZE}x{CURSOR_SIZE} blocks of 0..255, got {table.shape}")
    rgba = table.astype(np.uint8).reshape(4, CURSOR_SIZE, CURSOR_SIZE).transpose(1, 2, 0).copy()
    rgba.flags.writeable = False
    return rgba


def cursor_position(x: float, y: float, frame_height: int) -> tuple[int, int]:
    """Top-left pixel (column, row) of the cursor for mouse (x, y) in 1280x720 recording pixels.

    The original scales by frame height / 720 and truncates with int(): 640x360 frames take half.
    """
    scale = frame_height / RECORDING_HEIGHT_PX
    return int(x * scale), int(y * scale)


def draw_cursor(frame: np.ndarray, x: float, y: float) -> None:
    """Alpha-composite the cursor in place onto an RGB uint8 [H, W, 3] frame at recording coordinates (x, y).

    The part of the cursor past the right or bottom edge is cut off, as in the original. A position left
    of or above the frame (the original fails there) draws the part that falls inside.
    """
    rgba = cursor_rgba()
    cx, cy = cursor_position(x, y, frame.shape[0])
    top, left = max(cy, 0), max(cx, 0)
    bottom, right = min(cy + CURSOR_SIZE, frame.shape[0]), min(cx + CURSOR_SIZE, frame.shape[1])
    if bottom <= top or right <= left:
        return
    crop = rgba[top - cy : bottom - cy, left - cx : right - cx]
    alpha = crop[:, :, 3:] / 255.0  # float64, as the original's cursor_alpha
    region = frame[top:bottom, left:right]
    frame[top:bottom, left:right] = (region * (1 - alpha) + crop[:, :, :3] * alpha).astype(np.uint8)
