"""A stand-in for MineRL that replays stored frames: dry runs and tests of the rollout without Minecraft.

    env = ReplayEnv("data/dataset_contractor/<episode>")     # or any video file, e.g. a gameplay mp4
    env.seed(0); obs = env.reset()                            # obs["pov"]: the first frame
    obs, reward, done, info = env.step(action)                # the next frame; done after the last one

It has MineRL 1.x's old gym interface (rollout.minerl_env.GymEnv) and checks every action it receives
with `check_minerl_action`, so a rollout against it proves that the agent, the prompts, the weights and the
outputs work together, and that every action would be accepted by MineRL. What the agent does changes
nothing it sees: the frames are the recording's, so the video shows the recording, not the agent's play.
Rewards are 0.0 and `info` is empty; observations hold only `pov` (no inventory or position, so no
programmatic metrics).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data.episode import load_episode
from data.video_io import VideoReader
from rollout.minerl_env import check_minerl_action

READ_CHUNK_FRAMES = 64  # frames decoded at a time (a 640x360 chunk is ~44 MB)


class ReplayEnv:
    """Replays an episode directory's frames.mp4 or a video file; one frame per reset/step."""

    def __init__(self, source: str | os.PathLike) -> None:
        self.source = Path(source)
        if self.source.is_dir():
            episode = load_episode(self.source)
            self._read, self.num_frames, self._close = episode.read_frames, episode.num_frames, episode.close
        else:
            reader = VideoReader(self.source)
            self._read, self.num_frames, self._close = reader.read_range, reader.num_frames, reader.close
        if self.num_frames < 2:
            self._close()
            raise ValueError(f"{self.source}: {self.num_frames} frame(s); a replay needs at least 2")
        self.seeds: list[int] = []  # every seed() call, in order
        self.actions: list[dict] = []  # every action step() received since the last reset()
        self._index = -1
        self._chunk_start, self._chunk = 0, np.empty((0,))

    def description(self) -> str:
        """What the run record names as the environment."""
        return f"ReplayEnv {self.source} ({self.num_frames} frames; the agent's actions do not change what it sees)"

    def _frame(self, index: int) -> np.ndarray:
        if not self._chunk_start <= index < self._chunk_start + len(self._chunk):
            self._chunk_start = index
            self._chunk = self._read(index, min(index + READ_CHUNK_FRAMES, self.num_frames))
        return self._chunk[index - self._chunk_start]

    def seed(self, seed: int) -> None:
        """Recorded only (a replay has no world to generate); MineRL requires an int."""
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"MineRL's seed() takes an int, got {seed!r}")
        self.seeds.append(seed)

    def reset(self) -> dict:
        """Back to the first frame."""
        self._index = 0
        self.actions = []
        return {"pov": self._frame(0)}

    def step(self, action: dict) -> tuple[dict, float, bool, dict]:
        """Check the action as MineRL would, then show the next frame; done at the last frame."""
        if self._index < 0:
            raise RuntimeError("step() before reset()")
        if self._index >= self.num_frames - 1:
            raise RuntimeError("step() after the episode ended (done was True); call reset()")
        check_minerl_action(action)
        self.actions.append(action)
        self._index += 1
        return {"pov": self._frame(self._index)}, 0.0, self._index == self.num_frames - 1, {}

    def close(self) -> None:
        """Release the video file."""
        self._close()
