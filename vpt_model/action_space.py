"""The VPT action space: MineRL env actions <-> factored buttons/camera bins <-> joint indices.

Three representations of one action:
- env: what MineRL takes, a dict of button ints plus ``camera`` = [pitch, yaw] in degrees.
- factored: ``buttons`` [N, 20] 0/1 in ``FACTORED_BUTTONS`` order and ``camera_bins`` [N, 2]
  (pitch bin, yaw bin), each in 0..10 after mu-law quantisation.
- joint: what the policy heads predict, ``buttons`` in 0..8640 and ``camera`` in 0..120.

All functions are vectorised over a leading batch axis and use numpy.
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np

# The factored button order of VPT (index i of a factored buttons row).
FACTORED_BUTTONS: tuple[str, ...] = (
    "attack", "back", "forward", "jump", "left", "right", "sneak", "sprint", "use", "drop", "inventory",
) + tuple(f"hotbar.{i}" for i in range(1, 10))
# Buttons a MineRL env action carries; the agent never emits the last three.
ENV_BUTTONS: tuple[str, ...] = FACTORED_BUTTONS + ("ESC", "pickItem", "swapHands")

# Mutually exclusive button groups of the joint space, in mixed-radix order (last varies fastest).
# Within a group a later option wins when several are pressed; opposite movement keys cancel.
BUTTON_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hotbar", ("none",) + tuple(f"hotbar.{i}" for i in range(1, 10))),
    ("fore_back", ("none", "forward", "back")),
    ("left_right", ("none", "left", "right")),
    ("sprint_sneak", ("none", "sprint", "sneak")),
    ("use", ("none", "use")),
    ("drop", ("none", "drop")),
    ("attack", ("none", "attack")),
    ("jump", ("none", "jump")),
    ("camera", ("none", "camera")),
)
N_BUTTON_COMBOS = 8641  # 10*3*3*3*2*2*2*2*2 combinations + "inventory" alone
INVENTORY_BUTTON_INDEX = 8640
NULL_BUTTON_INDEX = 0

N_CAMERA_BINS = 11
CAMERA_NULL_BIN = N_CAMERA_BINS // 2
N_CAMERA_COMBOS = N_CAMERA_BINS * N_CAMERA_BINS
NULL_CAMERA_INDEX = CAMERA_NULL_BIN * N_CAMERA_BINS + CAMERA_NULL_BIN  # 60

CAMERA_MAXVAL = 10.0  # degrees; larger moves are clipped
CAMERA_BINSIZE = 2.0
CAMERA_MU = 10.0

_BUTTON_INDEX = {name: i for i, name in enumerate(FACTORED_BUTTONS)}
_GROUP_SIZES = np.array([len(options) for _, options in BUTTON_GROUPS], dtype=np.int64)


def discretize_camera(degrees: np.ndarray) -> np.ndarray:
    """Mu-law quantise camera angles (degrees) to bins 0..10; same rounding (half to even) as VPT."""
    x = np.clip(np.asarray(degrees, dtype=np.float64), -CAMERA_MAXVAL, CAMERA_MAXVAL) / CAMERA_MAXVAL
    v = np.sign(x) * (np.log1p(CAMERA_MU * np.abs(x)) / np.log1p(CAMERA_MU)) * CAMERA_MAXVAL
    return np.round((v + CAMERA_MAXVAL) / CAMERA_BINSIZE).astype(np.int64)


def undiscretize_camera(bins: np.ndarray) -> np.ndarray:
    """Camera bins 0..10 -> bin-centre angles in degrees (inverse mu-law)."""
    v = (np.asarray(bins, dtype=np.float64) * CAMERA_BINSIZE - CAMERA_MAXVAL) / CAMERA_MAXVAL
    return np.sign(v) * ((1.0 + CAMERA_MU) ** np.abs(v) - 1.0) / CAMERA_MU * CAMERA_MAXVAL


def _group_choice(buttons: np.ndarray, group: str, options: Sequence[str]) -> np.ndarray:
    """Index of the chosen option of one group for each row of factored buttons."""
    if group == "camera":
        raise ValueError("the camera group is decided by the camera bins")
    pressed = np.stack([buttons[:, _BUTTON_INDEX[o]] != 0 for o in options[1:]], axis=1)  # (N, K)
    if group in ("fore_back", "left_right"):
        pressed[pressed.all(axis=1)] = False  # both opposite keys: neither
    ranks = np.arange(1, len(options))
    return np.max(np.where(pressed, ranks, 0), axis=1)  # the later-listed pressed option wins


def factored_to_joint(buttons: np.ndarray, camera_bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factored buttons [N,20] + camera bins [N,2] -> joint (buttons [N], camera [N]) indices."""
    buttons = np.asarray(buttons)
    camera_bins = np.asarray(camera_bins, dtype=np.int64)
    if buttons.ndim != 2 or buttons.shape[1] != len(FACTORED_BUTTONS):
        raise ValueError(f"buttons must be [N, {len(FACTORED_BUTTONS)}], got {buttons.shape}")
    if camera_bins.shape != (buttons.shape[0], 2):
        raise ValueError(f"camera_bins must be [N, 2], got {camera_bins.shape}")
    camera_on = np.any(camera_bins != CAMERA_NULL_BIN, axis=1)
    joint = np.zeros(buttons.shape[0], dtype=np.int64)
    for (group, options), size in zip(BUTTON_GROUPS, _GROUP_SIZES):
        choice = camera_on.astype(np.int64) if group == "camera" else _group_choice(buttons, group, options)
        joint = joint * size + choice
    joint_camera = camera_bins[:, 0] * N_CAMERA_BINS + camera_bins[:, 1]
    inventory = buttons[:, _BUTTON_INDEX["inventory"]] != 0
    # inventory excludes every other button and the camera in this direction (the reverse keeps the camera)
    joint[inventory] = INVENTORY_BUTTON_INDEX
    joint_camera[inventory] = NULL_CAMERA_INDEX
    return joint, joint_camera


def _build_joint_tables() -> tuple[np.ndarray, np.ndarray]:
    """Joint button index -> factored buttons row, and -> whether its camera meta action is off.

    Inventory (index 8640) has no camera meta action, so its camera is never switched off: the sampled
    camera passes through, as in VPT's CameraHierarchicalMapping.to_factored (lib/action_mapping.py).
    """
    rows = np.zeros((N_BUTTON_COMBOS, len(FACTORED_BUTTONS)), dtype=np.int64)
    camera_off = np.zeros(N_BUTTON_COMBOS, dtype=bool)
    combos = itertools.product(*(options for _, options in BUTTON_GROUPS))
    for index, combo in enumerate(combos):
        for option in combo[:-1]:
            if option != "none":
                rows[index, _BUTTON_INDEX[option]] = 1
        camera_off[index] = combo[-1] != "camera"
    rows[INVENTORY_BUTTON_INDEX, _BUTTON_INDEX["inventory"]] = 1
    return rows, camera_off


_JOINT_TABLES: tuple[np.ndarray, np.ndarray] | None = None


def _joint_tables() -> tuple[np.ndarray, np.ndarray]:
    global _JOINT_TABLES
    if _JOINT_TABLES is None:  # built on first use, not at import
        _JOINT_TABLES = _build_joint_tables()
    return _JOINT_TABLES


def joint_to_factored(joint_buttons: np.ndarray, joint_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint indices -> factored buttons [N,20] and camera bins [N,2].

    The camera bins are null where the joint button's camera meta action is off; for inventory (8640)
    the camera index passes through unchanged (the original's behaviour, SPEC section 4).
    """
    joint_buttons = np.asarray(joint_buttons, dtype=np.int64).reshape(-1)
    joint_camera = np.asarray(joint_camera, dtype=np.int64).reshape(-1)
    if joint_buttons.size and (joint_buttons.min() < 0 or joint_buttons.max() >= N_BUTTON_COMBOS):
        raise ValueError(f"joint button index out of range 0..{N_BUTTON_COMBOS - 1}")
    if joint_camera.size and (joint_camera.min() < 0 or joint_camera.max() >= N_CAMERA_COMBOS):
        raise ValueError(f"joint camera index out of range 0..{N_CAMERA_COMBOS - 1}")
    rows, camera_off = _joint_tables()
    buttons = rows[joint_buttons].copy()
    camera_bins = np.stack([joint_camera // N_CAMERA_BINS, joint_camera % N_CAMERA_BINS], axis=1)
    camera_bins[camera_off[joint_buttons]] = CAMERA_NULL_BIN
    return buttons, camera_bins


def env_arrays_to_joint(env_buttons: np.ndarray, env_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Env buttons [N, >=20] (ENV_BUTTONS order) + camera degrees [N,2] -> joint indices."""
    env_buttons = np.asarray(env_buttons)
    return factored_to_joint(env_buttons[:, : len(FACTORED_BUTTONS)], discretize_camera(env_camera))


def env_actions_to_arrays(actions: Sequence[Mapping]) -> tuple[np.ndarray, np.ndarray]:
    """A list of MineRL env action dicts -> env buttons [N,23] uint8 and camera [N,2] float32."""
    buttons = np.zeros((len(actions), len(ENV_BUTTONS)), dtype=np.uint8)
    camera = np.zeros((len(actions), 2), dtype=np.float32)
    for i, action in enumerate(actions):
        for j, name in enumerate(ENV_BUTTONS):
            buttons[i, j] = 1 if int(np.asarray(action.get(name, 0)).reshape(-1)[0]) else 0
        camera[i] = np.asarray(action.get("camera", (0.0, 0.0)), dtype=np.float32).reshape(2)
    return buttons, camera


def joint_to_env_action(joint_button: int, joint_camera: int) -> dict:
    """One joint action -> a MineRL env action dict (all env buttons, camera as np.ndarray [2])."""
    buttons, camera_bins = joint_to_factored(np.array([joint_button]), np.array([joint_camera]))
    action: dict = {name: int(buttons[0, i]) for i, name in enumerate(FACTORED_BUTTONS)}
    action.update({"ESC": 0, "pickItem": 0, "swapHands": 0})
    action["camera"] = undiscretize_camera(camera_bins[0]).astype(np.float32)
    return action


def env_action_to_joint(action: Mapping) -> tuple[int, int]:
    """One MineRL env action dict -> (joint button index, joint camera index)."""
    buttons, camera = env_actions_to_arrays([action])
    joint_buttons, joint_camera = env_arrays_to_joint(buttons, camera)
    return int(joint_buttons[0]), int(joint_camera[0])


def is_null_joint(joint_buttons: np.ndarray, joint_camera: np.ndarray) -> np.ndarray:
    """True where the agent action does nothing (null buttons and null camera)."""
    return (np.asarray(joint_buttons) == NULL_BUTTON_INDEX) & (np.asarray(joint_camera) == NULL_CAMERA_INDEX)
