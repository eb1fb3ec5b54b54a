"""Generated recordings in the VPT contractor format (640x360 h264 mp4 + jsonl), for tests and the demo.

The frames make the actions learnable: each stretch of frames shows one behaviour's colour (plus a
moving stripe pattern and noise), and the jsonl lines hold that behaviour's keys and mouse input. A
policy that learns colour -> action lowers its loss, so the whole pipeline can be checked end to end
without real data. Some lines are null (nothing pressed) and some open the inventory GUI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from data.video_io import VideoWriter

WIDTH, HEIGHT = 640, 360
# name: (RGB colour, keys, mouse buttons, mouse dx, mouse dy)
BEHAVIOURS: dict[str, tuple[tuple[int, int, int], list[str], list[int], float, float]] = {
    "forward": ((200, 50, 50), ["key.keyboard.w"], [], 0.0, 0.0),
    "forward_jump": ((50, 200, 50), ["key.keyboard.w", "key.keyboard.space"], [], 0.0, 0.0),
    "attack": ((50, 50, 200), [], [0], 0.0, 0.0),
    "turn_right": ((210, 210, 60), [], [], 40.0, 0.0),
    "look_down": ((200, 60, 200), [], [], 0.0, 30.0),
    "sprint_left": ((60, 200, 200), ["key.keyboard.left.control", "key.keyboard.a"], [], 0.0, 0.0),
}
NULL_COLOUR = (128, 128, 128)


def _frame(colour: tuple[int, int, int], t: int, rng: np.random.Generator) -> np.ndarray:
    """A 360x640 RGB frame: the behaviour colour, a stripe pattern that moves with time, light noise."""
    frame = np.empty((HEIGHT, WIDTH, 3), dtype=np.float32)
    frame[:] = colour
    stripes = (np.arange(WIDTH) + 7 * t) % 80 < 20
    frame[HEIGHT // 2 :, stripes] *= 0.6
    frame += rng.normal(0, 6, size=(HEIGHT, 1, 1)).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _line(t: int, keys: list[str], buttons: list[int], new_buttons: list[int], dx: float, dy: float,
          hotbar: int, gui: bool, cursor: tuple[float, float]) -> dict:
    return {
        "mouse": {"x": cursor[0], "y": cursor[1], "dx": dx, "dy": dy, "buttons": buttons,
                  "newButtons": new_buttons, "dwheel": 0},
        "keyboard": {"keys": keys, "newKeys": []},
        "isGuiOpen": gui,
        "hotbar": hotbar,
        "yaw": 0.0,
        "pitch": 0.0,
        "tick": t,
    }


def write_synthetic_recording(out_dir: str | os.PathLike, stem: str, num_frames: int, seed: int) -> tuple[Path, Path]:
    """Write <out_dir>/<stem>.mp4 and <stem>.jsonl (one line per frame); returns both paths."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(BEHAVIOURS)
    lines, t = [], 0
    video_path, jsonl_path = out_dir / f"{stem}.mp4", out_dir / f"{stem}.jsonl"
    hotbar = 0
    with VideoWriter(video_path, fps=20, crf=28) as video:  # contractor videos are lossy too
        while t < num_frames:
            length = int(rng.integers(10, 40))
            kind = rng.choice(["behaviour"] * 8 + ["null", "gui"])
            name = names[int(rng.integers(len(names)))]
            for _ in range(min(length, num_frames - t)):
                if kind == "null":
                    colour, line = NULL_COLOUR, _line(t, [], [], [], 0.0, 0.0, hotbar, False, (0.0, 0.0))
                elif kind == "gui":
                    cursor = (float(rng.integers(200, 1000)), float(rng.integers(100, 600)))
                    colour = (90, 70, 40)
                    line = _line(t, ["key.keyboard.e"] if rng.random() < 0.1 else [], [], [], 3.0, 0.0, hotbar, True, cursor)
                else:
                    colour, keys, buttons, dx, dy = BEHAVIOURS[name]
                    if rng.random() < 0.02:
                        hotbar = int(rng.integers(0, 9))  # a scroll-wheel slot change
                    line = _line(t, list(keys), list(buttons), list(buttons), dx, dy, hotbar, False, (640.0, 360.0))
                video.write(_frame(colour, t, rng))
                lines.append(line)
                t += 1
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
