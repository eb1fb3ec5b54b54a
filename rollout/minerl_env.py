"""MineRL 1.x as the agent meets it: the environment STEVE-1 plays in, and what an action must look like.

The rollout loop needs only MineRL 1.x's old gym interface (`GymEnv`): `seed(int)` sets the world of the
NEXT `reset()` (MineRL forgets it after that reset, so it is set before every episode), `reset() -> obs`,
`step(action) -> (obs, reward, done, info)`, `close()`. `obs["pov"]` is the 360x640 RGB uint8 frame.

The action facts below were read from MineRL v1.0.1 (`HumanControlEnvSpec.create_actionables`): one
`Discrete(2)` entry per key of its keymap (the 23 names of `vpt_model.action_space.ENV_BUTTONS`) and
`camera`, a `Box(-180, 180, shape=(2,), float32)` of [pitch, yaw] degrees.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Protocol

import numpy as np

from vpt_model.action_space import ENV_BUTTONS

# MineRL HumanSurvival settings of VPT / STEVE-1 (the agent was trained on what these render)
ENV_KWARGS: dict[str, Any] = dict(
    fov_range=[70, 70], frameskip=1, gamma_range=[2, 2], guiscale_range=[1, 1],
    resolution=[640, 360], cursor_size_range=[16.0, 16.0],
)
ENV_DESCRIPTION = "MineRL HumanSurvival " + ", ".join(f"{k}={v}" for k, v in ENV_KWARGS.items())
CAMERA_LIMIT_DEGREES = 180.0
ACTION_KEYS = frozenset(ENV_BUTTONS) | {"camera"}

MINERL_MISSING = (
    "MineRL 1.x is not installed (rollouts need it, training does not): install JDK 8 (java -version -> 1.8), "
    "then .venv/bin/pip install -r requirements-minerl.txt; headless machines run with xvfb-run -a; "
    "see README.md 'Rolling the agent out'. A dry run without Minecraft: --replay_env <episode dir or mp4>"
)


class GymEnv(Protocol):
    """MineRL 1.x's (old gym) environment interface, all the rollout loop uses."""

    def seed(self, seed: int) -> Any: ...
    def reset(self) -> dict: ...
    def step(self, action: dict) -> tuple[dict, float, bool, dict]: ...
    def close(self) -> None: ...


class InvalidActionError(ValueError):
    """An action dict that MineRL's HumanSurvival would not accept (a bug in the agent, never an env failure)."""


def check_minerl_action(action: Mapping[str, Any]) -> None:
    """Raise InvalidActionError unless `action` is a valid HumanSurvival action.

    Valid: exactly the keys ENV_BUTTONS + "camera"; each button an int (Python or NumPy, not bool) that
    is 0 or 1; camera a float NumPy array of shape (2,), finite, within [-180, 180] degrees.
    """
    if not isinstance(action, Mapping):
        raise InvalidActionError(f"an action is a dict, got {type(action).__name__}")
    missing, extra = ACTION_KEYS - set(action), set(action) - ACTION_KEYS
    if missing or extra:
        raise InvalidActionError(f"action keys differ from MineRL's: missing {sorted(missing)}, unknown {sorted(extra)}")
    for name in ENV_BUTTONS:
        value = action[name]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value not in (0, 1):
            raise InvalidActionError(f"action[{name!r}] must be the int 0 or 1, got {value!r} ({type(value).__name__})")
    camera = action["camera"]
    if not isinstance(camera, np.ndarray) or camera.shape != (2,) or camera.dtype.kind != "f":
        shown = f"{camera.dtype} {camera.shape}" if isinstance(camera, np.ndarray) else type(camera).__name__
        raise InvalidActionError(f"action['camera'] must be a float np.ndarray of shape (2,), got {shown}")
    if not np.isfinite(camera).all() or np.abs(camera).max() > CAMERA_LIMIT_DEGREES:
        raise InvalidActionError(f"action['camera'] {camera.tolist()} is outside [-180, 180] degrees")


def minerl_missing() -> str | None:
    """None when MineRL's HumanSurvival can be imported, else the one-line message saying how to install it."""
    try:
        importlib.import_module("minerl.herobraine.env_specs.human_survival_specs")
    except ImportError:
        return MINERL_MISSING
    return None


def make_minerl_env() -> GymEnv:
    """A new HumanSurvival environment with STEVE-1's settings (starts a Minecraft process: ~1 min)."""
    from minerl.herobraine.env_specs.human_survival_specs import HumanSurvival

    return HumanSurvival(**ENV_KWARGS).make()
