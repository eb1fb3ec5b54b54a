"""Training samples: hindsight relabelling, p_uncond, determinism, contents, chunks, augmentation, workers."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data.episode import EMBED_START, EpisodeFormatError, load_episode
from data.minecraft_dataset import (
    ColorJitter,
    MinecraftDataset,
    SkippingBadSamples,
    chunk_starts,
    goal_frame_per_frame,
    read_sampling_file,
    sample_goal_frames,
)
from episode_factory import (
    embed_index,
    frame_indices,
    index_embeds,
    index_frames,
    make_dataset,
    make_episode,
    random_actions,
    write_legacy_episode,
)
from vpt_model.action_space import env_actions_to_arrays, env_arrays_to_joint

T = 32
LENGTHS = [T + EMBED_START, 100, 161, 240]  # the shortest possible episode, and chunks that overlap at the end
MIN_GOALS, MAX_GOALS = 15, 40  # gaps short enough that goals change inside a 32-frame sample


@pytest.fixture(scope="module")
def episodes(tmp_path_factory) -> list[str]:
    return [str(path) for path in make_dataset(tmp_path_factory.mktemp("dataset"), LENGTHS, seed=3)]


def make(episodes: list[str], **kwargs) -> MinecraftDataset:
    settings = dict(T=T, min_btwn_goals=MIN_GOALS, max_btwn_goals=MAX_GOALS, p_uncond=0.0)
    settings.update(kwargs)
    return MinecraftDataset(episodes, **settings)


def assert_samples_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def goals_of(sample: dict) -> np.ndarray:
    """The frame each frame's goal embedding came from (episode_factory embeddings encode it)."""
    return embed_index(sample["mineclip_embed"])


class ScriptedRng:
    """Stands in for np.random.Generator in sample_goal_frames: returns the given gaps in order."""

    def __init__(self, gaps: list[int], low: int, high: int) -> None:
        self.gaps, self.low, self.high = list(gaps), low, high

    def integers(self, low: int, high: int) -> int:
        assert (low, high) == (self.low, self.high)
        return self.gaps.pop(0)


# ---------------------------------------------------------------------------------------------
# Hindsight relabelling: the pure functions


def test_sample_goal_frames_walks_the_drawn_gaps_and_clamps_at_the_end():
    # 20, 50, 90: only 10 frames remain after 90 (< 15), so that goal moves to the last frame.
    assert sample_goal_frames(100, 15, 200, ScriptedRng([20, 30, 40], 15, 200)).tolist() == [20, 50, 99]
    # A gap that jumps past the end also lands on the last frame.
    assert sample_goal_frames(100, 15, 200, ScriptedRng([60, 120], 15, 200)).tolist() == [60, 99]
    # Exactly 15 frames left after a goal: not clamped, the next gap (14 here, clamped) ends the walk.
    assert sample_goal_frames(100, 15, 200, ScriptedRng([85, 30], 15, 200)).tolist() == [85, 99]


@pytest.mark.parametrize("num_frames", [16, 17, 30, 31, 47, 100, 215, 216, 1000, 6000])
@pytest.mark.parametrize("min_goals, max_goals", [(15, 200), (15, 16), (20, 45)])
def test_sample_goal_frames_properties(num_frames, min_goals, max_goals):
    for seed in range(50):
        goals = sample_goal_frames(num_frames, min_goals, max_goals, np.random.default_rng(seed))
        assert goals.dtype == np.int64
        assert goals[-1] == num_frames - 1
        assert np.all(np.diff(goals) > 0)
        assert goals[0] >= EMBED_START  # every goal frame has an embedding
        gaps = np.diff(np.concatenate([[0], goals]))
        assert np.all((gaps[:-1] >= min_goals) & (gaps[:-1] < max_goals)), (seed, goals)
        # Only the last goal was moved: every earlier one left at least min_goals frames after it.
        assert np.all(num_frames - goals[:-1] >= min_goals)
        # The clamped last gap is at least min_goals - 1 and below what a drawn gap plus the clamp can reach.
        assert min(min_goals, num_frames) - 1 <= gaps[-1] <= max_goals + min_goals - 2


def test_goal_frame_per_frame_points_at_the_next_goal():
    goals = np.array([20, 50, 99])
    per_frame = goal_frame_per_frame(goals, 0, 100)
    expected = np.array([20] * 21 + [50] * 30 + [99] * 49)  # frames 0..20, 21..50, 51..99
    np.testing.assert_array_equal(per_frame, expected)
    # The off-by-one fixed: the frame right after a goal already asks for the NEXT goal (the
    # original still gave frame g + 1 the goal g it had just reached).
    assert per_frame[20] == 20 and per_frame[21] == 50 and per_frame[51] == 99
    np.testing.assert_array_equal(goal_frame_per_frame(goals, 45, 55), [50] * 6 + [99] * 4)
    assert goal_frame_per_frame(goals, 7, 7).shape == (0,)


def test_goal_frame_per_frame_is_the_first_goal_at_or_after_each_frame():
    for seed in range(30):
        rng = np.random.default_rng(seed)
        goals = sample_goal_frames(500, 15, 60, rng)
        start = int(rng.integers(0, 400))
        per_frame = goal_frame_per_frame(goals, start, start + 100)
        brute = [min(g for g in goals if g >= t) for t in range(start, start + 100)]
        np.testing.assert_array_equal(per_frame, brute)


def test_chunk_starts_examples():
    assert chunk_starts(15 + 32, 32) == [15]  # the shortest usable episode: one chunk
    assert chunk_starts(15 + 64, 32) == [15, 47]
    assert chunk_starts(100, 32) == [15, 47, 68]  # the last chunk overlaps the one before
    assert chunk_starts(6000, 640) == [15 + 640 * k for k in range(9)] + [5360]


def test_chunk_starts_properties():
    cases = [(n, t) for t in (7, 64, 640) for n in [*range(t + EMBED_START, t + EMBED_START + 5 * t, 3), 6000, 6001, 6015]]
    for num_frames, t in cases:
        if num_frames < t + EMBED_START:
            continue  # the dataset refuses such episodes (see test_short_episode_is_refused_by_name)
        starts = chunk_starts(num_frames, t)
        assert starts[0] == EMBED_START, (num_frames, t)
        assert starts[-1] + t == num_frames  # the last chunk ends exactly at the episode end
        assert len(set(starts)) == len(starts) and starts == sorted(starts)
        assert all(b - a == t for a, b in zip(starts[:-2], starts[1:-1]))  # steps of T ...
        assert all(0 < b - a <= t for a, b in zip(starts[-2:-1], starts[-1:]))  # ... the last may overlap
        covered = np.zeros(num_frames, dtype=bool)  # every frame from 15 on is in some chunk
        for start in starts:
            covered[start:start + t] = True
        assert covered[EMBED_START:].all() and not covered[:EMBED_START].any()


# ---------------------------------------------------------------------------------------------
# Hindsight relabelling: what the dataset gives


def test_every_frame_is_conditioned_on_the_next_goal(episodes):
    for seed in range(6):
        for max_goals in (MAX_GOALS, 200):
            dataset = make(episodes, seed=seed, max_btwn_goals=max_goals)
            for index, (episode_index, start) in enumerate(dataset.samples):
                n = LENGTHS[episode_index]
                goals = goals_of(dataset[(seed, index)])
                frames = np.arange(start, start + T)
                assert np.all(goals >= frames) and np.all(goals >= EMBED_START) and np.all(goals <= n - 1)
                near_end = goals == n - 1  # the last goal may sit up to max + min frames ahead
                assert np.all((goals - frames < max_goals) | near_end)
                assert np.all(goals - frames < max_goals + MIN_GOALS)
                # The first goal at or after t: the goal changes exactly on the frame after it was reached.
                changes = np.flatnonzero(np.diff(goals)) + 1
                np.testing.assert_array_equal(changes, np.flatnonzero(goals[:-1] == frames[:-1]) + 1)
                assert np.all(np.diff(goals) >= 0)
                new_goals = np.unique(goals)
                gaps = np.diff(new_goals)[:-1] if new_goals[-1] == n - 1 else np.diff(new_goals)
                assert np.all((gaps >= MIN_GOALS) & (gaps < max_goals))
                if start + T == n:
                    assert goals[-1] == n - 1  # the episode's last frames aim at its last frame


# ---------------------------------------------------------------------------------------------
# p_uncond


def test_p_uncond_zeroes_whole_samples_at_its_rate(episodes):
    def zeroed(dataset: MinecraftDataset, epochs: int) -> list[bool]:
        out = []
        for epoch in range(epochs):
            for index in range(len(dataset)):
                embeds = dataset[(epoch, index)]["mineclip_embed"]
                assert embeds.dtype == np.float32 and np.isfinite(embeds).all()
                is_zero = not embeds.any()
                assert is_zero or np.all(np.abs(embeds).max(axis=1) > 0)  # all frames or none
                out.append(is_zero)
        return out

    assert all(zeroed(make(episodes, p_uncond=1.0), 2))
    assert not any(zeroed(make(episodes, p_uncond=0.0), 4))
    rate = np.mean(zeroed(make(episodes, p_uncond=0.3), 40))  # 400 samples: standard deviation 0.023
    assert 0.2 < rate < 0.4


# ---------------------------------------------------------------------------------------------
# Determinism


def test_validation_samples_repeat_exactly_and_are_never_unconditional(episodes):
    first = make(episodes, train=False, p_uncond=0.9, seed=5)
    second = make(episodes, train=False, p_uncond=0.9, seed=5)
    assert first.p_uncond == 0.0
    for index in range(len(first)):
        a = first[index]
        assert_samples_equal(a, second[index])
        assert_samples_equal(a, second[(7, index)])  # the epoch does not matter for validation
        assert np.abs(a["mineclip_embed"]).max(axis=1).min() > 0
    # In reverse order (other decoder positions, cached readers): still the same.
    for index in reversed(range(len(first))):
        assert_samples_equal(first[index], second[index])


def test_validation_goals_depend_only_on_the_validation_episodes(episodes):
    # Another --seed, another order of the list, another list around it: each sample keeps its goals, so
    # loss/val of two runs (and of evaluate_offline.py) is the same measurement.
    reference = make(episodes, train=False, seed=42)
    by_sample = {(reference.episode_dirs[e], s): reference[i] for i, (e, s) in enumerate(reference.samples)}
    for other in (make(episodes, train=False, seed=7), make(list(reversed(episodes)), train=False, seed=0),
                  make(episodes[1:], train=False, seed=3)):
        for index, (episode_index, start) in enumerate(other.samples):
            assert_samples_equal(other[index], by_sample[(other.episode_dirs[episode_index], start)])
    # ... while the goals do differ from sample to sample (they are drawn, not fixed)
    firsts = {goals_of(sample)[0] - start for (_, start), sample in by_sample.items()}
    assert len(firsts) > 3


def test_an_unreadable_sample_comes_back_blank_and_named(episodes, tmp_path):
    import shutil

    broken = tmp_path / "broken_episode"
    shutil.copytree(episodes[1], broken)
    dataset = make([episodes[0], str(broken)], seed=1)  # loads fine: the video is opened on the first read
    video = broken / "frames.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    skipping = SkippingBadSamples(dataset)
    good = skipping[(0, 0)]
    assert good["valid"] and good["error"] == ""
    assert_samples_equal({k: v for k, v in good.items() if k not in ("valid", "error")}, dataset[(0, 0)])
    bad_index = next(i for i, (e, _) in enumerate(dataset.samples) if e == 1)
    bad = skipping[(0, bad_index)]
    start = dataset.samples[bad_index][1]
    assert not bad["valid"] and bad["error"].startswith(f"{broken} frames {start}..{start + T - 1}: VideoError: ")
    assert_samples_equal({k: v for k, v in bad.items() if k not in ("valid", "error")}, dataset.blank_sample())
    assert 1 not in dataset._cache  # forgotten: a repaired file is read afresh
    batch = next(iter(DataLoader(skipping, batch_size=2, sampler=[(0, 0), (0, bad_index)])))
    assert batch["valid"].tolist() == [True, False] and batch["error"][0] == "" and str(broken) in batch["error"][1]


def test_training_samples_repeat_per_key_and_change_per_epoch(episodes):
    first = make(episodes, seed=2)
    second = make(episodes, seed=2)
    other_seed = make(episodes, seed=3)
    differs_by_epoch = differs_by_seed = 0
    for index in range(len(first)):
        a = first[(4, index)]
        assert_samples_equal(a, second[(4, index)])
        assert_samples_equal(first[(0, index)], second[index])  # a plain index is epoch 0
        b = first[(5, index)]
        np.testing.assert_array_equal(a["img"], b["img"])  # the same frames ...
        differs_by_epoch += not np.array_equal(goals_of(a), goals_of(b))  # ... other goals
        differs_by_seed += not np.array_equal(goals_of(a), goals_of(other_seed[(4, index)]))
    assert differs_by_epoch >= len(first) - 2 and differs_by_seed >= len(first) - 2


# ---------------------------------------------------------------------------------------------
# Sample contents


def test_sample_holds_the_episode_frames_and_actions(episodes):
    dataset = make(episodes)
    assert len(dataset) == sum(len(chunk_starts(n, T)) for n in LENGTHS)
    assert dataset.total_frames == len(dataset) * T and dataset.num_frames == LENGTHS
    assert dataset.samples == [(i, s) for i, n in enumerate(LENGTHS) for s in chunk_starts(n, T)]
    for index, (episode_index, start) in enumerate(dataset.samples):
        sample = dataset[index]
        assert sample["img"].dtype == np.uint8 and sample["img"].shape == (T, 128, 128, 3)
        assert sample["mineclip_embed"].dtype == np.float32 and sample["mineclip_embed"].shape == (T, 512)
        for key in ("buttons", "camera"):
            assert sample[key].dtype == np.int64 and sample[key].shape == (T,)
        assert sample["firsts"].dtype == bool and sample["firsts"].tolist() == [True] + [False] * (T - 1)

        with load_episode(episodes[episode_index]) as episode:
            np.testing.assert_array_equal(sample["img"], episode.read_frames(start, start + T))
            np.testing.assert_array_equal(sample["buttons"], episode.agent_buttons[start:start + T])
            np.testing.assert_array_equal(sample["camera"], episode.agent_camera[start:start + T])
        np.testing.assert_array_equal(frame_indices(sample["img"]), np.arange(start, start + T))
        # Against what the factory wrote (not only against the loader).
        buttons, camera = random_actions(LENGTHS[episode_index], seed=3 * 1000 + episode_index)
        joint_buttons, joint_camera = env_arrays_to_joint(buttons, camera)
        np.testing.assert_array_equal(sample["buttons"], joint_buttons[start:start + T])
        np.testing.assert_array_equal(sample["camera"], joint_camera[start:start + T])
        expected = index_embeds(LENGTHS[episode_index], seed=3 * 1000 + episode_index)[goals_of(sample)]
        np.testing.assert_array_equal(sample["mineclip_embed"], expected)


def test_short_episode_is_refused_by_name(episodes, tmp_path):
    short = make_episode(tmp_path / "too_short_episode", T + EMBED_START - 1, seed=0)
    with pytest.raises(ValueError, match=rf"--T {T} needs episodes of >= {T + EMBED_START} frames; "
                                         rf"too short: {short} \({T + EMBED_START - 1} frames\)"):
        make(episodes + [str(short)])


def test_constructor_checks(episodes):
    with pytest.raises(ValueError, match="min_btwn_goals .* must be >= 15"):
        make(episodes, min_btwn_goals=14)
    with pytest.raises(ValueError, match="max_btwn_goals .* must exceed"):
        make(episodes, min_btwn_goals=30, max_btwn_goals=30)
    with pytest.raises(ValueError, match="the sampling lists no episodes"):
        make([])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        make(["/nowhere/episode"])


def test_read_sampling_file_skips_blanks_and_comments(tmp_path):
    listing = tmp_path / "s_train.txt"
    listing.write_text("# written by generate_sampling\n/data/a\n\n  /data/b  \n   # indented comment\n")
    assert read_sampling_file(listing) == ["/data/a", "/data/b"]


# ---------------------------------------------------------------------------------------------
# Augmentation


def test_augmentation_only_when_enabled_and_only_for_training(episodes):
    plain = make(episodes, seed=1)
    augmented = make(episodes, seed=1, augment=True)
    val_plain = make(episodes, seed=1, train=False)
    val_augmented = make(episodes, seed=1, train=False, augment=True)
    changed = 0
    for index in range(len(plain)):
        a, b = plain[(0, index)], augmented[(0, index)]
        assert b["img"].dtype == np.uint8 and b["img"].shape == a["img"].shape
        changed += int(np.abs(a["img"].astype(np.int16) - b["img"]).mean() > 1.0)
        for key in ("mineclip_embed", "buttons", "camera", "firsts"):
            np.testing.assert_array_equal(a[key], b[key])  # only the frames change
        assert_samples_equal(val_plain[index], val_augmented[index])
    assert changed >= len(plain) - 1  # brightness/contrast jitter of up to 20% moves nearly every sample


def test_color_jitter_stays_uint8_in_range_and_grayscale_is_gray():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    frames[0] = 255  # saturated pixels must clip, not wrap around
    frames[1] = 0
    for seed in range(20):
        out = ColorJitter(strength=0.5)(frames, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.shape == frames.shape
    bright = ColorJitter(strength=0.5)(frames, _FixedRng(uniform=np.array([0.5, 0.0, 0.0]), random=1.0))
    assert np.all(bright[0] == 255) and np.all(bright[1] == 0)  # x1.5 brightness: 255 stays 255
    gray = ColorJitter(strength=0.0, p_grayscale=1.0)(frames, np.random.default_rng(0))
    assert np.all(np.abs(gray[..., 0].astype(int) - gray[..., 1]) <= 1)
    assert np.all(np.abs(gray[..., 1].astype(int) - gray[..., 2]) <= 1)
    same = ColorJitter(strength=0.0, p_grayscale=0.0)(frames, np.random.default_rng(0))
    assert np.abs(same.astype(int) - frames).max() <= 1  # no jitter: the frames (up to rounding)


class _FixedRng:
    def __init__(self, uniform: np.ndarray, random: float) -> None:
        self._uniform, self._random = uniform, random

    def uniform(self, low: float, high: float, size: int) -> np.ndarray:
        return self._uniform

    def random(self) -> float:
        return self._random


# ---------------------------------------------------------------------------------------------
# Worker processes


def test_pickled_dataset_gives_the_same_samples(episodes):
    dataset = make(episodes, p_uncond=0.5, seed=4)
    expected = [dataset[(1, index)] for index in range(len(dataset))]  # opens readers in this process
    copy = pickle.loads(pickle.dumps(dataset))
    assert len(copy._cache) == 0  # open videos and memory maps are not pickled
    for index in range(len(dataset)):
        assert_samples_equal(copy[(1, index)], expected[index])


@pytest.fixture(scope="module")
def long_episode(tmp_path_factory) -> str:
    return str(make_episode(tmp_path_factory.mktemp("long") / "episode", 700, seed=8))


@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_give_the_same_samples(long_episode, context):
    # One episode, so both workers read the same video at the same time.
    dataset = make([long_episode], p_uncond=0.5, seed=4)
    keys = [(1, index) for index in range(len(dataset))] * 3
    # Read in this process first: forked workers then inherit open readers, whose file offsets they
    # would share (and garble each other's reads) if the dataset did not reopen them per process.
    expected = [dataset[key] for key in keys]
    loader = DataLoader(dataset, batch_size=2, sampler=keys, num_workers=2, multiprocessing_context=context)
    got = [sample for batch in loader for sample in _unbatch(batch)]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a["img"].dtype == torch.uint8 and a["mineclip_embed"].dtype == torch.float32
        assert a["buttons"].dtype == torch.int64
        assert_samples_equal({k: v.numpy() for k, v in a.items()}, b)


def _unbatch(batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    return [{key: value[i] for key, value in batch.items()} for i in range(len(batch["img"]))]


# ---------------------------------------------------------------------------------------------
# The original STEVE-1 layout


def test_legacy_episodes_load_only_when_trusted(episodes, tmp_path):
    n = 90
    path = tmp_path / "contractor_legacy_episode"
    written = write_legacy_episode(path, n=n, seed=9, frames=index_frames(range(n)), embeds=index_embeds(n, seed=9))
    with pytest.raises(EpisodeFormatError, match="original STEVE-1 pickle layout.*trust_legacy_pickle"):
        make([str(path)])
    dataset = make([str(path), episodes[1]], trust_legacy_pickle=True, seed=1)
    assert dataset.num_frames == [n, LENGTHS[1]]
    joint_buttons, joint_camera = env_arrays_to_joint(*env_actions_to_arrays(written["actions"]))
    for index, (episode_index, start) in enumerate(dataset.samples):
        if episode_index != 0:
            continue
        sample = dataset[index]
        assert sample["img"].dtype == np.uint8 and sample["img"].shape == (T, 128, 128, 3)
        np.testing.assert_array_equal(frame_indices(sample["img"]), np.arange(start, start + T))  # mp4v, lossy
        np.testing.assert_array_equal(sample["buttons"], joint_buttons[start:start + T])
        np.testing.assert_array_equal(sample["camera"], joint_camera[start:start + T])
        goals = goals_of(sample)
        assert np.all(goals >= np.arange(start, start + T)) and np.all(goals >= EMBED_START)
        np.testing.assert_array_equal(sample["mineclip_embed"], written["embeds"][goals])


def test_sampling_file_round_trip(episodes, tmp_path):
    listing = tmp_path / "x_val.txt"
    listing.write_text("".join(f"{path}\n" for path in episodes))
    dataset = make(read_sampling_file(listing), train=False)
    assert [Path(p) for p in dataset.episode_dirs] == [Path(p) for p in episodes]
