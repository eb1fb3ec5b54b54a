"""Recorded actions (a jsonl file, one line per video frame) -> MineRL env actions, by the original rules.

Two formats, decided from the whole file: the VPT contractor recorder's lines (a file where any line has a
`mouse` or `keyboard` field) or one MineRL env action per line (`{"forward": 1, "camera": [pitch, yaw]}`).

Contractor lines follow the rules of the original STEVE-1 / VPT converters (SPEC.md section 5): keys and
mouse buttons 0/1/2 map to buttons, camera = [dy, dx] * 0.15 degrees, a change of `hotbar` presses that
slot, attack held from before the recording started is ignored until pressed anew. Quirks of older
recorder versions (VPT data notes) take the recorder's meaning:
- no `hotbar` field (before 6.11): the hotbar never changes;
- `"mouse": null` / `"keyboard": null` (before 6.13), or a whole line `null`: nothing from that device
  that frame (a null line is a null action; its frame is still read in step);
- mouse button ids above 2: mapped to nothing.
Every field the conversion uses is type- and range-checked; the first line that breaks a rule fails the
recording with `ActionFileError("<file>:<line>: <field>: <what>")`. Other fields (yaw, inventory, ...) are
not read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Sequence

import numpy as np

from vpt_model.action_space import ENV_BUTTONS

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
RECORDING_WIDTH_PX, RECORDING_HEIGHT_PX = 1280, 720  # mouse x/y are in the 1280x720 recording's pixels
# MineRL's camera action space allows at most 180 degrees per step: 1200 px at 0.15 degrees per pixel.
MAX_MOUSE_DELTA_PX = 180.0 / CAMERA_DEGREES_PER_PIXEL
# A cursor may sit a little outside the window; farther than one screen away is garbage, not a position.
CURSOR_X_RANGE = (-RECORDING_WIDTH_PX, 2 * RECORDING_WIDTH_PX)
CURSOR_Y_RANGE = (-RECORDING_HEIGHT_PX, 2 * RECORDING_HEIGHT_PX)
HOTBAR_SLOTS = 9  # `hotbar` is 0-based: 0..8
ENV_CAMERA_LIMIT_DEGREES = 180.0  # MineRL's camera Box(-180, 180)

CONTRACTOR_FORMAT, ENV_ACTION_FORMAT = "contractor", "env_actions"
IDM_FORMAT = "idm"  # labelled from the video by the inverse dynamics model (data.generation.idm_labelling)
_BUTTON_COLUMN = {name: i for i, name in enumerate(ENV_BUTTONS)}


class ActionFileError(ValueError):
    """An actions file breaks a rule: `<file>:<line>: <field>: <what>` (or `<file>: <what>` for the whole file)."""


@dataclasses.dataclass
class RecordingActions:
    """Per-line env actions of one recording (contractor or env-action format), before any labelling rule."""

    env_buttons: np.ndarray  # (N, 23) uint8, ENV_BUTTONS order
    env_camera: np.ndarray  # (N, 2) float64 degrees (pitch, yaw), not truncated (see data.generation.labelling)
    env_null: np.ndarray  # (N,) bool: the original rule (no mapped key, no mouse button 0-2, no mouse motion)
    gui_open: np.ndarray  # (N,) bool
    cursor_xy: np.ndarray  # (N, 2) float64 mouse position in recording pixels; NaN where unknown
    file_format: str = CONTRACTOR_FORMAT  # CONTRACTOR_FORMAT, ENV_ACTION_FORMAT or IDM_FORMAT

    def __len__(self) -> int:
        return len(self.env_buttons)


def _describe(value: Any) -> str:
    """A value as a message shows it: 'null', 'the string "0"', 'the number 1e+40', 'a list [1, 2]'."""
    if value is None:
        return "null"
    text = json.dumps(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    kind = {bool: "the boolean", str: "the string", list: "a list", dict: "an object"}.get(type(value), "the number")
    return f"{kind} {text}"


class _LineError(Exception):
    """A rule broken inside one line: (field, what); the caller adds the file and line."""


def _required(obj: dict, key: str, field: str) -> Any:
    if key not in obj:
        raise _LineError(field, "missing")
    return obj[key]


def _finite(value: Any, field: str, low: float, high: float, unit: str = "") -> float:
    """A JSON number (not a boolean) that is finite and within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _LineError(field, f"{_describe(value)}, expected a number")
    if not math.isfinite(value):
        raise _LineError(field, f"{json.dumps(value)} is not a finite number")
    if not low <= value <= high:
        raise _LineError(field, f"{value:g}{unit} is outside {low:g}..{high:g}")
    return float(value)


def _int_list(value: Any, field: str) -> list[int]:
    """A list of whole numbers >= 0 (mouse button ids)."""
    if not isinstance(value, list):
        raise _LineError(field, f"{_describe(value)}, expected a list of mouse button ids")
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise _LineError(f"{field}[{i}]", f"{_describe(item)}, expected a mouse button id (a whole number >= 0)")
    return value


def _str_list(value: Any, field: str) -> list[str]:
    """A list of key names."""
    if not isinstance(value, list):
        raise _LineError(field, f"{_describe(value)}, expected a list of key names")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _LineError(f"{field}[{i}]", f"{_describe(item)}, expected a key name")
    return value


def _object_or_null(value: Any, field: str) -> dict | None:
    if value is not None and not isinstance(value, dict):
        raise _LineError(field, f"{_describe(value)}, expected an object or null")
    return value


def read_action_lines(path: str | os.PathLike) -> list[Any]:
    """The JSON value of every non-empty line of a jsonl file; a bad line is an ActionFileError naming it."""
    values = []
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            try:
                values.append(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                reason = getattr(e, "msg", None) or getattr(e, "reason", None) or str(e)
                raise ActionFileError(f"{path}:{number}: line: not valid JSON ({reason})") from None
    if not values:
        raise ActionFileError(f"{path}: no action lines (empty file)")
    return values


def jsonl_start_problem(path: str | os.PathLike, max_bytes: int = 1 << 24) -> str | None:
    """Why a downloaded file cannot be an actions jsonl (its first line is no JSON object or null), or None."""
    with open(path, "rb") as file:
        first = b""
        while not first.strip():
            first = file.readline(max_bytes)
            if not first:
                return "empty file"
    try:
        value = json.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"first line is not JSON (starts with {first[:24]!r})"
    if value is not None and not isinstance(value, dict):
        return f"first line is {_describe(value)}, not an action object"
    return None


def detect_format(lines: Sequence[Any]) -> str:
    """CONTRACTOR_FORMAT when any line is an object with a `mouse` or `keyboard` field, else ENV_ACTION_FORMAT."""
    if any(isinstance(line, dict) and ("mouse" in line or "keyboard" in line) for line in lines):
        return CONTRACTOR_FORMAT
    return ENV_ACTION_FORMAT


def convert_contractor_lines(lines: Sequence[Any], source: str = "<jsonl>") -> RecordingActions:
    """Contractor recorder lines -> env actions by the original rules; raises ActionFileError naming line and field.

    `lines[i]` belongs to video frame i. Line numbers in messages count the non-empty lines from 1.
    """
    n = len(lines)
    buttons = np.zeros((n, len(ENV_BUTTONS)), dtype=np.uint8)
    camera = np.zeros((n, 2), dtype=np.float64)
    env_null = np.ones(n, dtype=bool)
    gui_open = np.zeros(n, dtype=bool)
    cursor = np.full((n, 2), np.nan, dtype=np.float64)
    attack_stuck = False
    last_hotbar = 0
    last_cursor = (np.nan, np.nan)  # a GUI frame whose mouse is null keeps the cursor where it was
    for i, line in enumerate(lines):
        try:
            parsed = _parse_contractor_line(line)
        except _LineError as e:
            field, what = e.args
            raise ActionFileError(f"{source}:{i + 1}: {field}: {what}") from None
        keys, mouse_buttons, new_buttons, dx, dy, hotbar, gui, xy = parsed
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
            name = MOUSE_BUTTONS.get(b)  # ids above 2 map to nothing
            if name is not None:
                buttons[i, _BUTTON_COLUMN[name]] = 1
                env_null[i] = False
        camera[i] = (dy * CAMERA_DEGREES_PER_PIXEL, dx * CAMERA_DEGREES_PER_PIXEL)
        if dx != 0 or dy != 0:
            env_null[i] = False
        # A hotbar change (scroll wheel or key) selects that slot; under the original rule it does not
        # make the line non-null.
        if hotbar is None:
            hotbar = last_hotbar
        if hotbar != last_hotbar:
            buttons[i, _BUTTON_COLUMN[f"hotbar.{hotbar + 1}"]] = 1
        last_hotbar = hotbar
        gui_open[i] = gui
        if xy is not None:
            last_cursor = xy
        cursor[i] = last_cursor
    return RecordingActions(buttons, camera, env_null, gui_open, cursor, CONTRACTOR_FORMAT)


def _parse_contractor_line(line: Any) -> tuple[list[str], list[int], list[int], float, float, int | None, bool, tuple | None]:
    """(keys, mouse buttons, new mouse buttons, dx, dy, hotbar or None, GUI open, cursor (x, y) or None)."""
    line = _object_or_null(line, "line")
    if line is None:
        return [], [], [], 0.0, 0.0, None, False, None
    for field in ("mouse", "keyboard"):
        if field not in line:
            raise _LineError(field, "missing (a contractor line has mouse and keyboard, each an object or null)")
    mouse = _object_or_null(line["mouse"], "mouse")
    keyboard = _object_or_null(line["keyboard"], "keyboard")
    keys: list[str] = []
    if keyboard is not None:
        keys = _str_list(_required(keyboard, "keys", "keyboard.keys"), "keyboard.keys")
    mouse_buttons: list[int] = []
    new_buttons: list[int] = []
    dx = dy = 0.0
    xy = None
    if mouse is not None:
        limit = MAX_MOUSE_DELTA_PX
        dx = _finite(_required(mouse, "dx", "mouse.dx"), "mouse.dx", -limit, limit, " px")
        dy = _finite(_required(mouse, "dy", "mouse.dy"), "mouse.dy", -limit, limit, " px")
        mouse_buttons = _int_list(_required(mouse, "buttons", "mouse.buttons"), "mouse.buttons")
        new_buttons = _int_list(mouse.get("newButtons", []), "mouse.newButtons")
        if "x" in mouse or "y" in mouse or line.get("isGuiOpen") is True:  # the cursor is drawn while a GUI is open
            xy = (_finite(_required(mouse, "x", "mouse.x"), "mouse.x", *CURSOR_X_RANGE, " px"),
                  _finite(_required(mouse, "y", "mouse.y"), "mouse.y", *CURSOR_Y_RANGE, " px"))
    hotbar = line.get("hotbar")
    if hotbar is not None:
        if isinstance(hotbar, bool) or not isinstance(hotbar, int):
            raise _LineError("hotbar", f"{_describe(hotbar)}, expected a slot 0..{HOTBAR_SLOTS - 1}")
        if not 0 <= hotbar < HOTBAR_SLOTS:
            raise _LineError("hotbar", f"{hotbar} is outside 0..{HOTBAR_SLOTS - 1}")
    gui = line.get("isGuiOpen", False)
    if not isinstance(gui, bool):
        raise _LineError("isGuiOpen", f"{_describe(gui)}, expected true or false")
    return keys, mouse_buttons, new_buttons, dx, dy, hotbar, gui, xy


def convert_env_action_lines(lines: Sequence[Any], source: str = "<jsonl>") -> RecordingActions:
    """Lines that are MineRL env actions already (e.g. custom recordings) -> the same structure.

    A line holds button names (value 0/1 or true/false) and optionally `camera` [pitch, yaw] in degrees; a
    missing button is not pressed; `null` is a null action. A line is null when no button is pressed and
    the camera is exactly zero (the original rule applied to env actions).
    """
    n = len(lines)
    buttons = np.zeros((n, len(ENV_BUTTONS)), dtype=np.uint8)
    camera = np.zeros((n, 2), dtype=np.float64)
    for i, line in enumerate(lines):
        try:
            line = _object_or_null(line, "line") or {}
            for name, value in line.items():
                if name == "camera":
                    camera[i] = _env_camera(value)
                    continue
                if name not in _BUTTON_COLUMN:
                    raise _LineError(name, "unknown action name (expected a MineRL button name or camera)")
                if not isinstance(value, (bool, int, float)) or value not in (0, 1):
                    raise _LineError(name, f"{_describe(value)}, expected 0 or 1")
                buttons[i, _BUTTON_COLUMN[name]] = int(value)
        except _LineError as e:
            field, what = e.args
            raise ActionFileError(f"{source}:{i + 1}: {field}: {what}") from None
    env_null = ~buttons.any(axis=1) & ~camera.any(axis=1)
    return RecordingActions(buttons, camera, env_null, np.zeros(n, bool), np.full((n, 2), np.nan), ENV_ACTION_FORMAT)


def _env_camera(value: Any) -> tuple[float, float]:
    """[pitch, yaw] in degrees, each finite and within MineRL's action space."""
    if not isinstance(value, list) or len(value) != 2:
        raise _LineError("camera", f"{_describe(value)}, expected [pitch, yaw] in degrees")
    limit = ENV_CAMERA_LIMIT_DEGREES
    return (_finite(value[0], "camera[0]", -limit, limit, " degrees"),
            _finite(value[1], "camera[1]", -limit, limit, " degrees"))


def load_actions_file(path: str | os.PathLike) -> RecordingActions:
    """Read a jsonl of contractor lines or of MineRL env actions (format decided from the whole file).

    Raises ActionFileError naming the file, line and field of the first broken rule; OSError if unreadable.
    """
    lines = read_action_lines(path)
    if detect_format(lines) == CONTRACTOR_FORMAT:
        return convert_contractor_lines(lines, source=str(path))
    return convert_env_action_lines(lines, source=str(path))
