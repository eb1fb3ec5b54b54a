"""VPT contractor jsonl lines -> MineRL env actions as the original converter maps them, one line per video frame."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

from vpt_model.action_space import ENV_BUTTONS, env_arrays_to_joint, is_null_joint

KEYBOARD_BUTTONS = {
    "key.keyboard.escape": "ESC",
    "key.keyboard.s": "back",
    "key.keyboard.q": "drop",
    "key.keyboard.w": "forward",
    **{f"key.keyboard.{i}": f"hotbar.{i}" for i in range(1, 10)},
    "key.keyboard.e": "inventory",
    "key.keyboard.space": "jump",
    "key.keyboard.a": "left",
    "key.keyboard.d": "right",
    "key.keyboard.left.shift": "sneak",
    "key.keyboard.left.control": "sprint",
    "key.keyboard.f": "swapHands",
}
MOUSE_BUTTONS = {0: "attack", 1: "use", 2: "pickItem"}
CAMERA_DEGREES_PER_PIXEL = 360.0 / 2400.0  # 0.15
RECORDING_HEIGHT_PX = 720  # mouse x/y are in the 1280x720 recording's pixels

_BUTTON_COLUMN = {name: i for i, name in enumerate(ENV_BUTTONS)}


class ActionFileError(ValueError):
    """A contractor jsonl file is unreadable or a line lacks what the conversion needs."""


@dataclasses.dataclass
class ContractorActions:
    """Per-line env actions of one recording, before null filtering."""

    env_buttons: np.ndarray  # (N, 23) uint8, ENV_BUTTONS order
    env_camera: np.ndarray  # (N, 2) float32 degrees (pitch, yaw)
    env_null: np.ndarray  # (N,) bool: the original STEVE-1 rule (no mapped key, no mouse button, no mouse motion)
    gui_open: np.ndarray  # (N,) bool
    cursor_xy: np.ndarray  # (N, 2) float64 mouse position in recording pixels (exact JSON values: the cursor pixel truncates them)

    @property
    def agent_null(self) -> np.ndarray:
        """(N,) bool: null in the agent's action space (joint buttons 0 and camera 60), as in the VPT paper."""
        joint_buttons, joint_camera = env_arrays_to_joint(self.env_buttons, self.env_camera)
        return is_null_joint(joint_buttons, joint_camera)

    def __len__(self) -> int:
        return len(self.env_buttons)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Parse a jsonl file; a bad or truncated line is an error naming the file and line."""
    lines = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ActionFileError(f"{path}: line {number} is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
            if not isinstance(record, dict):
                raise ActionFileError(f"{path}: line {number} is {type(record).__name__}, expected an object")
            lines.append(record)
    if not lines:
        raise ActionFileError(f"{path}: no action lines")
    return lines


def convert_contractor_lines(
    lines: Sequence[dict[str, Any]], truncate_camera: bool = False, source: str = "<jsonl>"
) -> ContractorActions:
    """The original conversion rules: keys, mouse buttons, camera, hotbar changes and the stuck-attack fix."""
    n = len(lines)
    buttons = np.zeros((n, len(ENV_BUTTONS)), dtype=np.uint8)
    camera = np.zeros((n, 2), dtype=np.float32)
    env_null = np.ones(n, dtype=bool)
    gui_open = np.zeros(n, dtype=bool)
    cursor = np.zeros((n, 2), dtype=np.float64)
    attack_stuck = False
    last_hotbar = 0
    for i, line in enumerate(lines):
        try:
            mouse, keys = line["mouse"], line["keyboard"]["keys"]
            mouse_buttons = list(mouse["buttons"])
            new_buttons = list(mouse.get("newButtons", []))
            dx, dy = float(mouse["dx"]), float(mouse["dy"])
            hotbar = int(line["hotbar"])
        except (KeyError, TypeError, ValueError) as e:
            raise ActionFileError(f"{source}: line {i + 1} lacks a field the conversion needs ({e!r})") from None
        # A recording can start with attack held from before it began; ignore it until pressed anew.
        if i == 0:
            attack_stuck = new_buttons == [0]
        elif attack_stuck and 0 in new_buttons:
            attack_stuck = False
        if attack_stuck:
            mouse_buttons = [b for b in mouse_buttons if b != 0]
        for key in keys:
            name = KEYBOARD_BUTTONS.get(key)
            if name is not None:
                buttons[i, _BUTTON_COLUMN[name]] = 1
                env_null[i] = False
        for b in mouse_buttons:
            name = MOUSE_BUTTONS.get(b)
            if name is not None:
                buttons[i, _BUTTON_COLUMN[name]] = 1
                env_null[i] = False
        pitch, yaw = dy * CAMERA_DEGREES_PER_PIXEL, dx * CAMERA_DEGREES_PER_PIXEL
        if truncate_camera:  # the original stored these in an int array: whole degrees, toward zero
            pitch, yaw = float(np.trunc(pitch)), float(np.trunc(yaw))
        camera[i] = (pitch, yaw)
        if dx != 0 or dy != 0:
            env_null[i] = False
        # A hotbar change (scroll wheel or key) selects that slot; it does not make the line non-null
        # under the original rule, which is one reason we filter on the agent action instead.
        if hotbar != last_hotbar:
            buttons[i, _BUTTON_COLUMN[f"hotbar.{hotbar + 1}"]] = 1
        last_hotbar = hotbar
        gui_open[i] = bool(line.get("isGuiOpen", False))
        cursor[i] = (float(mouse.get("x", 0.0)), float(mouse.get("y", 0.0)))
    return ContractorActions(buttons, camera, env_null, gui_open, cursor)


def env_action_lines_to_contractor_actions(lines: Iterable[dict[str, Any]], source: str = "<jsonl>") -> ContractorActions:
    """Lines that are MineRL env action dicts already (custom recordings) -> the same structure."""
    buttons, cameras = [], []
    for i, line in enumerate(lines):
        row = np.zeros(len(ENV_BUTTONS), dtype=np.uint8)
        for name, value in line.items():
            if name == "camera":
                continue
            if name not in _BUTTON_COLUMN:
                raise ActionFileError(f"{source}: line {i + 1} has unknown action key {name!r}")
            row[_BUTTON_COLUMN[name]] = 1 if int(np.asarray(value).reshape(-1)[0]) else 0
        try:
            cam = np.asarray(line.get("camera", (0.0, 0.0)), dtype=np.float32).reshape(2)
        except (ValueError, TypeError):
            raise ActionFileError(f"{source}: line {i + 1} camera must be [pitch, yaw]") from None
        buttons.append(row)
        cameras.append(cam)
    n = len(buttons)
    if n == 0:
        raise ActionFileError(f"{source}: no action lines")
    env_buttons, env_camera = np.stack(buttons), np.stack(cameras)
    env_null = ~env_buttons.any(axis=1) & ~env_camera.any(axis=1)
    return ContractorActions(env_buttons, env_camera, env_null, np.zeros(n, bool), np.zeros((n, 2), np.float64))


def is_contractor_line(line: dict[str, Any]) -> bool:
    """Contractor recordings have `mouse` and `keyboard` objects; env actions do not."""
    return isinstance(line.get("mouse"), dict) and isinstance(line.get("keyboard"), dict)


def load_actions_file(path: str | os.PathLike, truncate_camera: bool = False) -> ContractorActions:
    """Read a jsonl of contractor lines or of MineRL env actions (detected from the first line)."""
    lines = read_jsonl(path)
    if is_contractor_line(lines[0]):
        return convert_contractor_lines(lines, truncate_camera=truncate_camera, source=str(path))
    return env_action_lines_to_contractor_actions(lines, source=str(path))
