"""Generated recordings in the VPT contractor format (640x360 h264 mp4 + jsonl), for tests and the demo.

The frames show which action is taken, so a policy can learn it quickly: the frame is split into a
4 x 2 grid of cells and each behaviour lights its own cell in white on a background of its own
colour (plus a moving stripe pattern and light noise, so the video is not trivial to encode). Where a
cell sits survives everything the policy's CNN does to an image (GroupNorm removes a frame's overall
brightness and colour balance, not where the bright part is), so even the tiny demo model learns the
mapping from a few hundred small training steps.

Each jsonl line holds that behaviour's keys and mouse input. The behaviours are chosen so that the
labels mean the same under every conversion option:
- mouse moves are multiples of 20 pixels, i.e. whole degrees (20 px x 0.15 deg/px = 3 deg), so camera
  labels truncated to whole degrees (the original's) equal float labels;
- no line presses nothing while moving the mouse by less than a degree, so judging null on the env
  action or on the agent action drops the same lines (the null stretches press nothing at all);
- the hotbar never changes, and mouse buttons are "new" only on a stretch's first line.
The stretches come in rounds: a null stretch (nothing pressed, what a contractor does while the game
loads), then every behaviour once in a random order. So null filtering always has something to drop,
every recording of a round's length (~140 frames) or more shows every action (a model trained on some
recordings meets nothing new on the others), and one stretch per round opens the inventory GUI (the
converter draws the cursor from the lines' x, y).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.video_io import VideoWriter

WIDTH, HEIGHT = 640, 360
GRID_COLUMNS, GRID_ROWS = 4, 2
CELL_WIDTH, CELL_HEIGHT = WIDTH // GRID_COLUMNS, HEIGHT // GRID_ROWS
CAMERA_STEP_PIXELS = 20  # 20 px of mouse motion = 3 degrees exactly (0.15 degrees per pixel)
STRETCH_FRAMES = (8, 24)  # a behaviour lasts [8, 24) frames
NULL_STRETCH_FRAMES = (4, 12)
VIDEO_CRF = 28  # contractor videos are lossy too


@dataclass(frozen=True)
class Behaviour:
    """What a stretch of frames shows (background colour, lit grid cell) and the input recorded with it."""

    colour: tuple[int, int, int]
    cell: int | None  # index into the 4 x 2 grid, row-major; None: no cell lit
    keys: tuple[str, ...] = ()
    mouse_buttons: tuple[int, ...] = ()  # 0 attack, 1 use
    dx: int = 0  # mouse motion in pixels: yaw (positive: right)
    dy: int = 0  # pitch (positive: down)
    gui: bool = False


# Seven distinct joint button actions and seven camera actions, none taken in more than 1/4 of the
# frames, so "always predict the most common action" stays far below what a policy that sees can do.
BEHAVIOURS: dict[str, Behaviour] = {
    "forward": Behaviour((200, 50, 50), 0, keys=("key.keyboard.w",)),
    "forward_jump_turn": Behaviour((50, 200, 50), 1, keys=("key.keyboard.w", "key.keyboard.space"),
                                   dx=CAMERA_STEP_PIXELS),
    "attack_look_down": Behaviour((50, 50, 200), 2, mouse_buttons=(0,), dy=CAMERA_STEP_PIXELS),
    "turn_right": Behaviour((210, 210, 60), 3, dx=2 * CAMERA_STEP_PIXELS),
    "turn_left": Behaviour((200, 60, 200), 4, dx=-2 * CAMERA_STEP_PIXELS),
    "sprint_left_turn": Behaviour((60, 200, 200), 5, keys=("key.keyboard.left.control", "key.keyboard.a"),
                                  dx=-CAMERA_STEP_PIXELS),
    "use_look_up": Behaviour((230, 140, 40), 6, mouse_buttons=(1,), dy=-CAMERA_STEP_PIXELS),
    "inventory": Behaviour((90, 70, 40), 7, keys=("key.keyboard.e",), gui=True),
}
NULL = Behaviour((128, 128, 128), None)


def _frame(behaviour: Behaviour, t: int, rng: np.random.Generator) -> np.ndarray:
    """A 360x640 RGB frame: the behaviour's colour dimmed, its grid cell white, moving stripes, light noise."""
    frame = np.empty((HEIGHT, WIDTH, 3), dtype=np.float32)
    frame[:] = np.asarray(behaviour.colour, np.float32) * 0.5
    if behaviour.cell is not None:
        row, column = divmod(behaviour.cell, GRID_COLUMNS)
        frame[row * CELL_HEIGHT : (row + 1) * CELL_HEIGHT, column * CELL_WIDTH : (column + 1) * CELL_WIDTH] = 255.0
    stripes = (np.arange(WIDTH) + 7 * t) % 80 < 20
    frame[:, stripes] *= 0.85
    frame += rng.normal(0, 4, size=(HEIGHT, 1, 1)).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _line(t: int, behaviour: Behaviour, first_of_stretch: bool, cursor: tuple[float, float]) -> dict:
    """One jsonl line (the recorder's fields) for frame t of a stretch of `behaviour`."""
    buttons = list(behaviour.mouse_buttons)
    return {
        "mouse": {"x": cursor[0], "y": cursor[1], "dx": float(behaviour.dx), "dy": float(behaviour.dy),
                  "buttons": buttons, "newButtons": buttons if first_of_stretch else [], "dwheel": 0},
        "keyboard": {"keys": list(behaviour.keys), "newKeys": list(behaviour.keys) if first_of_stretch else []},
        "isGuiOpen": behaviour.gui,
        "hotbar": 0,
        "yaw": 0.0,
        "pitch": 0.0,
        "tick": t,
    }


def write_synthetic_recording(out_dir: str | os.PathLike, stem: str, num_frames: int, seed: int) -> tuple[Path, Path]:
    """Write <out_dir>/<stem>.mp4 and <stem>.jsonl (one line per frame); returns both paths.

    Rounds of stretches (module docstring): a null stretch of [4, 12) frames, then each behaviour of
    BEHAVIOURS for [8, 24) frames in a random order; the last stretch is cut at `num_frames`.
    """
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines: list[dict] = []
    video_path, jsonl_path = out_dir / f"{stem}.mp4", out_dir / f"{stem}.jsonl"
    with VideoWriter(video_path, fps=20, crf=VIDEO_CRF) as video:
        while len(lines) < num_frames:
            stretches = [(NULL, NULL_STRETCH_FRAMES)] + [(BEHAVIOURS[name], STRETCH_FRAMES) for name in rng.permutation(list(BEHAVIOURS))]
            for behaviour, lengths in stretches:
                for i in range(min(int(rng.integers(*lengths)), num_frames - len(lines))):
                    t = len(lines)
                    # the GUI cursor wanders; elsewhere it rests at the screen centre as in the recordings
                    cursor = (float(rng.integers(200, 1000)), float(rng.integers(100, 600))) if behaviour.gui else (640.0, 360.0)
                    video.write(_frame(behaviour, t, rng))
                    lines.append(_line(t, behaviour, i == 0, cursor))
    jsonl_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return video_path, jsonl_path


def write_synthetic_dataset(root: str | os.PathLike, num_episodes: int, num_frames: int, seed: int = 0,
                            basedir: str | None = None) -> Path:
    """Recordings under <root>/data/ and an index <root>/index.json (basedir = `basedir` or the local path)."""
    root = Path(root)
    relpaths = []
    for i in range(num_episodes):
        stem = f"synthetic-{seed}-{i:03d}"
        write_synthetic_recording(root / "data", stem, num_frames, seed=seed * 1000 + i)
        relpaths.append(f"data/{stem}.mp4")
    index = {"basedir": basedir if basedir is not None else str(root) + "/", "relpaths": relpaths}
    index_path = root / "index.json"
    index_path.write_text(json.dumps(index, indent=1))
    return index_path
