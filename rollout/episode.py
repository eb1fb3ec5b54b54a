"""One rollout: the agent plays an environment for up to N steps; every frame goes to an mp4 (20 fps, h264).

    holder = EnvHolder(make_env)                      # makes the env on first use, again after it dies
    result = run_episode(holder, agent, goal, cond_scale=6.0, seed=0, max_steps=1000,
                         video_path="out/chop_a_tree_00.mp4", max_env_restarts=3)

The environment is anything with MineRL 1.x's old gym interface (rollout.minerl_env.GymEnv). When a call
into it raises (a Minecraft process that crashed or hung up), the episode starts again from its first
step in a new environment with the same seed, at most `max_env_restarts` times; the video of a failed
attempt is deleted, and the result lists every failure. Errors of the agent or of an action it chose
(InvalidActionError) are bugs and are raised, never retried.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from data.video_io import VideoWriter
from rollout.captions import overlay_caption
from rollout.minerl_env import GymEnv, check_minerl_action
from rollout.programmatic_metrics import ProgrammaticMetrics, has_programmatic_observations
from toolkit_utils.progress import progress_bar

VIDEO_FPS = 20  # MineRL runs at 20 steps per second


class EnvironmentDied(Exception):
    """A call into the environment raised; `failure` says where and what."""

    def __init__(self, failure: dict[str, Any]) -> None:
        super().__init__(failure["error"])
        self.failure = failure


@dataclass
class EpisodeResult:
    """How a rollout went (the fields of its run record; see rollout.run_record)."""

    steps: int
    ended: str  # "max_steps", "env_done" or "env_died"
    env_restarts: int
    env_failures: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    programmatic_metrics: dict[str, float] | None = None
    frame_size: tuple[int, int] | None = None


class EnvHolder:
    """Owns the environment: makes it on first use and again after `discard()` (a dead one)."""

    def __init__(self, make_env: Callable[[], GymEnv]) -> None:
        self.make_env = make_env
        self.env: GymEnv | None = None
        self.made = 0  # environments made so far

    def get(self) -> GymEnv:
        """The live environment (made now if there is none)."""
        if self.env is None:
            self.made += 1
            self.env = self.make_env()
        return self.env

    def discard(self) -> None:
        """Drop a dead environment; errors while closing it are ignored (it is dead already)."""
        env, self.env = self.env, None
        if env is not None:
            try:
                env.close()
            except Exception:  # noqa: BLE001 - a crashed process can fail to close in any way
                pass

    def close(self) -> None:
        """Close the live environment, if any."""
        env, self.env = self.env, None
        if env is not None:
            env.close()


def _env_call(attempt: int, step: int, during: str, call: Callable[..., Any], *args: Any) -> Any:
    """Run one call into the environment; any exception becomes EnvironmentDied naming attempt, step and call."""
    try:
        return call(*args)
    except Exception as error:  # noqa: BLE001 - whatever a dying Minecraft process raises
        message = " ".join(f"{type(error).__name__}: {error}".split())[:500]
        raise EnvironmentDied({"attempt": attempt, "step": step, "during": during, "error": message}) from error


def _attempt(holder: EnvHolder, agent: Any, goal: np.ndarray, cond_scale: float, seed: int, max_steps: int,
             partial_path: Path, overlay_text: str | None, attempt: int, desc: str) -> EpisodeResult:
    """One try at the whole episode; raises EnvironmentDied when the environment fails."""
    env = _env_call(attempt, 0, "make", holder.get)
    _env_call(attempt, 0, "seed", env.seed, seed)  # MineRL applies a seed to the next reset only
    started = time.monotonic()
    obs = _env_call(attempt, 0, "reset", env.reset)
    agent.reset(cond_scale=cond_scale, seed=seed)
    metrics = ProgrammaticMetrics(obs) if has_programmatic_observations(obs) else None
    ended, steps, frame_size = "max_steps", 0, None
    with VideoWriter(partial_path, fps=VIDEO_FPS) as video:  # deleted if anything below raises
        for step in progress_bar(range(1, max_steps + 1), desc=desc, unit="step", leave=False):
            action = agent.get_action(obs, goal)
            check_minerl_action(action)
            obs, _, done, _ = _env_call(attempt, step, "step", env.step, action)
            frame = np.asarray(obs["pov"])
            frame_size = frame.shape[:2]
            video.write(overlay_caption(frame, overlay_text) if overlay_text else frame)
            if metrics is not None:
                metrics.update(obs)
            steps = step
            if done:
                ended = "env_done"
                break
    return EpisodeResult(steps=steps, ended=ended, env_restarts=0, wall_time_s=round(time.monotonic() - started, 3),
                         programmatic_metrics=metrics.as_dict() if metrics else None, frame_size=frame_size)


def run_episode(holder: EnvHolder, agent: Any, goal: np.ndarray, cond_scale: float, seed: int, max_steps: int,
                video_path: str | os.PathLike, max_env_restarts: int, overlay_text: str | None = None,
                desc: str = "rollout") -> EpisodeResult:
    """Play one episode into `video_path` (written under a temporary name, renamed when complete).

    `agent` has MineRLConditionalAgent's reset(cond_scale, seed) and get_action(obs, goal) -> MineRL action;
    `goal` is the (512,) goal embedding; `seed` seeds the world (env.seed before reset) and the agent's
    sampling. The environment is replaced at most `max_env_restarts` times; if it still dies, the result
    says "env_died", and no video is left.
    """
    video_path = Path(video_path)
    partial_path = video_path.with_name(f".{video_path.stem}.partial.mp4")
    failures: list[dict[str, Any]] = []
    for attempt in range(max_env_restarts + 1):
        try:
            result = _attempt(holder, agent, goal, cond_scale, seed, max_steps, partial_path, overlay_text, attempt, desc)
        except EnvironmentDied as died:
            failures.append(died.failure)
            holder.discard()
            last = attempt == max_env_restarts
            tqdm.write(f"{video_path.name}: the environment died ({died.failure['during']} at step "
                       f"{died.failure['step']}: {died.failure['error']}); "
                       + ("no restarts left" if last else f"restart {attempt + 1} of {max_env_restarts}"))
            continue
        os.replace(partial_path, video_path)
        result.env_restarts, result.env_failures = attempt, failures
        return result
    return EpisodeResult(steps=0, ended="env_died", env_restarts=max_env_restarts, env_failures=failures)
