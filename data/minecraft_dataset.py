"""Training samples: T consecutive frames of an episode with hindsight-relabelled goal embeddings.

A sample is a dict of numpy arrays:
    img            uint8   (T, 128, 128, 3)  RGB frames
    mineclip_embed float32 (T, 512)          goal embedding each frame is conditioned on (zeros: unconditional)
    buttons        int64   (T,)              joint button index (0..8640) of the action taken at the frame
    camera         int64   (T,)              joint camera index (0..120)
    firsts         bool    (T,)              True at the sample's first frame (a new episode for the policy)

Hindsight relabelling (as STEVE-1 trains): walk the episode choosing goal frames with gaps drawn uniformly
from [min_btwn_goals, max_btwn_goals); a goal closer than min_btwn_goals to the end moves to the last
frame. Frame t is conditioned on the embedding of the first goal frame g >= t. The original used g >= t - 1
(it moved on to the next goal one frame late, so the frame after a goal still asked for the goal just
reached); we fix that off-by-one.

Validation goals depend only on the validation episodes (each sample's episode name and start frame), not
on --seed or the list order, so `loss/val` of two runs, and of training/evaluate_offline.py, measure the
same thing.

A sample that cannot be read mid-run (a truncated or corrupt frames.mp4, a file gone) is skipped, not fatal:
`SkippingBadSamples` returns it blank and marked invalid with a line naming the episode; the loss leaves
it out and training counts it.
"""

from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from data.episode import EMBED_DIM, EMBED_START, FRAME_SIZE, load_episode

DEFAULT_EPISODE_CACHE = 32  # open episodes kept per worker (actions in memory, embeddings memory-mapped)
VALIDATION_GOAL_SEED = 1_000_003  # with the episode name and start frame: validation goals, the same in every run
SAMPLE_READ_ERRORS = (OSError, ValueError, EOFError)  # a broken or vanished episode file (VideoError is a ValueError)


def sample_goal_frames(num_frames: int, min_btwn_goals: int, max_btwn_goals: int, rng: np.random.Generator) -> np.ndarray:
    """Goal frame indices for a whole episode, increasing, the last one = num_frames - 1."""
    goals = []
    current = 0
    while current < num_frames - 1:
        current += int(rng.integers(min_btwn_goals, max_btwn_goals))
        if num_frames - current < min_btwn_goals:
            current = num_frames - 1
        goals.append(current)
    return np.asarray(goals, dtype=np.int64)


def goal_frame_per_frame(goals: np.ndarray, start: int, stop: int) -> np.ndarray:
    """For frames start..stop-1, the first goal frame at or after each frame."""
    return goals[np.searchsorted(goals, np.arange(start, stop), side="left")]


def chunk_starts(num_frames: int, T: int) -> list[int]:
    """Sample start frames of one episode: from frame 15 in steps of T; the last chunk ends at the episode end."""
    starts = []
    for start in range(EMBED_START, num_frames, T):
        starts.append(min(start, num_frames - T))
    return sorted(set(starts))


def _index(key: int | tuple[int, int]) -> int:
    """The sample index of a dataset key: an index, or (epoch, index)."""
    return key[1] if isinstance(key, tuple) else key


def read_sampling_file(path: str | os.PathLike) -> list[str]:
    """One episode directory per line (blank lines and '#' comments ignored)."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


class ColorJitter:
    """Random brightness/contrast/saturation and grayscale, the same for all frames of a sample."""

    def __init__(self, strength: float = 0.2, p_grayscale: float = 0.1) -> None:
        self.strength = strength
        self.p_grayscale = p_grayscale

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = frames.astype(np.float32)
        brightness, contrast, saturation = 1.0 + rng.uniform(-self.strength, self.strength, size=3)
        gray = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (T, H, W)
        x = gray[..., None] + saturation * (x - gray[..., None])
        x = gray.mean() + contrast * (x - gray.mean())
        x = x * brightness
        if rng.random() < self.p_grayscale:
            x = np.repeat((x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None], 3, axis=-1)
        return np.clip(x, 0, 255).astype(np.uint8)


class EpisodesTooShortError(ValueError):
    """Listed episodes are shorter than T + 15 frames: a setting mistake (T, or the sampling was made for another T)."""

    def __init__(self, T: int, too_short: list[str]) -> None:
        self.T, self.needed, self.too_short = T, T + EMBED_START, too_short
        super().__init__(f"--T {T} {self.problem()} (regenerate the sampling with the same --T)")

    def problem(self) -> str:
        """'needs episodes of >= N frames; too short: a (n frames), ...' (at most five named)."""
        named = ", ".join(self.too_short[:5]) + (f" and {len(self.too_short) - 5} more" if len(self.too_short) > 5 else "")
        return f"needs episodes of >= {self.needed} frames; too short: {named}"


class MinecraftDataset(Dataset):
    """Samples of T frames from the listed episodes; see the module docstring for what a sample holds."""

    def __init__(
        self,
        episode_dirs: Sequence[str],
        T: int,
        min_btwn_goals: int = 15,
        max_btwn_goals: int = 200,
        p_uncond: float = 0.1,
        seed: int = 0,
        train: bool = True,
        augment: bool = False,
        trust_legacy_pickle: bool = False,
        episode_cache: int = DEFAULT_EPISODE_CACHE,
    ) -> None:
        if min_btwn_goals < EMBED_START:
            raise ValueError(f"min_btwn_goals ({min_btwn_goals}) must be >= {EMBED_START}: earlier frames have no embedding")
        if max_btwn_goals <= min_btwn_goals:
            raise ValueError(f"max_btwn_goals ({max_btwn_goals}) must exceed min_btwn_goals ({min_btwn_goals})")
        self.episode_dirs = list(episode_dirs)
        self.T = T
        self.min_btwn_goals = min_btwn_goals
        self.max_btwn_goals = max_btwn_goals
        self.p_uncond = p_uncond if train else 0.0  # validation: every sample conditioned, comparable across runs
        self.seed = seed  # training randomness only: validation goals come from the episodes themselves
        self.train = train
        self.augment = ColorJitter() if (augment and train) else None
        self.trust_legacy_pickle = trust_legacy_pickle
        self._cache: OrderedDict[int, object] = OrderedDict()
        self._cache_pid = os.getpid()  # the process whose open files the cache holds
        self._cache_size = episode_cache
        self.num_frames = []
        self.samples: list[tuple[int, int]] = []  # (episode index, start frame)
        too_short = []
        for i, path in enumerate(self.episode_dirs):
            n = self._episode(i).num_frames
            self.num_frames.append(n)
            if n < T + EMBED_START:
                too_short.append(f"{path} ({n} frames)")
                continue
            self.samples += [(i, s) for s in chunk_starts(n, T)]
        if too_short:
            raise EpisodesTooShortError(T, too_short)
        if not self.samples:
            raise ValueError("the sampling lists no episodes")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()  # open videos and memory maps stay in the process that opened them
        return state

    @property
    def total_frames(self) -> int:
        return len(self.samples) * self.T

    def __len__(self) -> int:
        return len(self.samples)

    def _episode(self, index: int):
        if self._cache_pid != os.getpid():
            # A forked DataLoader worker inherits the parent's open videos, whose file offsets it shares
            # with the parent and the other workers: concurrent seeks would read each other's bytes.
            self._cache = OrderedDict()
            self._cache_pid = os.getpid()
        episode = self._cache.get(index)
        if episode is None:
            episode = load_episode(self.episode_dirs[index], trust_legacy_pickle=self.trust_legacy_pickle)
            self._cache[index] = episode
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return episode

    def _rng(self, key: int | tuple[int, int]) -> np.random.Generator:
        if self.train:
            epoch, index = key if isinstance(key, tuple) else (0, key)
            return np.random.default_rng([self.seed, epoch, index])
        # Validation: fixed per sample whatever the seed, the epoch or the other episodes of the list.
        episode_index, start = self.samples[_index(key)]
        name = os.path.basename(os.path.normpath(self.episode_dirs[episode_index]))
        return np.random.default_rng([VALIDATION_GOAL_SEED, zlib.crc32(name.encode()), start])

    def sample_label(self, key: int | tuple[int, int]) -> str:
        """'<episode dir> frames a..b' for messages about a sample."""
        episode_index, start = self.samples[_index(key)]
        return f"{self.episode_dirs[episode_index]} frames {start}..{start + self.T - 1}"

    def forget_episode(self, key: int | tuple[int, int]) -> None:
        """Drop a sample's episode from the cache (after a read error, so a later read starts afresh)."""
        episode = self._cache.pop(self.samples[_index(key)][0], None)
        if episode is not None:
            episode.close()

    def recorded_actions(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample's joint button and camera indices, (T,) each, without decoding its frames."""
        episode_index, start = self.samples[index]
        episode = self._episode(episode_index)
        return (np.asarray(episode.agent_buttons[start:start + self.T], dtype=np.int64),
                np.asarray(episode.agent_camera[start:start + self.T], dtype=np.int64))

    def blank_sample(self) -> dict[str, np.ndarray]:
        """A sample of the right shapes and dtypes with nothing in it (stands in for one that failed)."""
        firsts = np.zeros(self.T, dtype=bool)
        firsts[0] = True
        return {"img": np.zeros((self.T, FRAME_SIZE, FRAME_SIZE, 3), np.uint8),
                "mineclip_embed": np.zeros((self.T, EMBED_DIM), np.float32),
                "buttons": np.zeros(self.T, np.int64), "camera": np.zeros(self.T, np.int64), "firsts": firsts}

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, np.ndarray]:
        """key: a sample index, or (epoch, index) so training randomness differs per epoch and resumes exactly."""
        index = _index(key)
        episode_index, start = self.samples[index]
        episode = self._episode(episode_index)
        stop = start + self.T
        rng = self._rng(key)
        goals = sample_goal_frames(episode.num_frames, self.min_btwn_goals, self.max_btwn_goals, rng)
        goal_frames = goal_frame_per_frame(goals, start, stop)
        embeds = np.asarray(episode.embeds[goal_frames], dtype=np.float32)  # fancy index of a memmap: a copy
        if self.p_uncond > 0 and rng.random() < self.p_uncond:
            embeds = np.zeros_like(embeds)
        frames = episode.read_frames(start, stop)
        if self.augment is not None:
            frames = self.augment(frames, rng)
        buttons, camera = self.recorded_actions(index)
        firsts = np.zeros(self.T, dtype=bool)
        firsts[0] = True
        return {"img": frames, "mineclip_embed": embeds, "buttons": buttons, "camera": camera, "firsts": firsts}


class SkippingBadSamples(Dataset):
    """A MinecraftDataset whose unreadable samples come back blank, marked, and named instead of raising.

    Every item gets `valid` (bool) and `error` ('' or one line naming the episode, its frames and the
    reason); the default collate turns them into a (B,) bool tensor and a list of B strings.
    """

    def __init__(self, dataset: MinecraftDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        try:
            return {**self.dataset[key], "valid": True, "error": ""}
        except SAMPLE_READ_ERRORS as error:
            self.dataset.forget_episode(key)
            reason = " ".join(str(error).split()) or type(error).__name__
            return {**self.dataset.blank_sample(), "valid": False,
                    "error": f"{self.dataset.sample_label(key)}: {type(error).__name__}: {reason}"}
