"""The GUI mouse cursor drawn onto contractor frames while a GUI (inventory, crafting) is open."""

from __future__ import annotations

import numpy as np

from data.generation.contractor_actions import RECORDING_HEIGHT_PX

# A 16x16 arrow pointer, tip at the top-left pixel: '#' white, '.' white at half opacity (edge), ' ' clear.
_ARROW = (
    "#               ",
    "##              ",
    "###             ",
    "####            ",
    "#####           ",
    "######          ",
    "#######         ",
    "########        ",
    "#########       ",
    "##########      ",
    "######.         ",
    "###.###.        ",
    "##. .###        ",
    "#.   ###.       ",
    "      ###       ",
    "      .#.       ",
)
CURSOR_ALPHA = np.array([[{"#": 1.0, ".": 0.5, " ": 0.0}[c] for c in row] for row in _ARROW], dtype=np.float32)
CURSOR_COLOR = np.array([255, 255, 255], dtype=np.float32)


def draw_cursor(frame: np.ndarray, x: float, y: float) -> None:
    """Alpha-blend the cursor in place at recording coordinates (x, y), scaled to this frame's height."""
    scale = frame.shape[0] / RECORDING_HEIGHT_PX
    cx, cy = int(x * scale), int(y * scale)
    h = max(0, min(frame.shape[0] - cy, CURSOR_ALPHA.shape[0]))
    w = max(0, min(frame.shape[1] - cx, CURSOR_ALPHA.shape[1]))
    if h == 0 or w == 0 or cx < 0 or cy < 0:
        return
    alpha = CURSOR_ALPHA[:h, :w, None]
    region = frame[cy : cy + h, cx : cx + w].astype(np.float32)
    frame[cy : cy + h, cx : cx + w] = (region * (1 - alpha) + CURSOR_COLOR * alpha).astype(np.uint8)
