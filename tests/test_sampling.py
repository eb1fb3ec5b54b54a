"""Step 2, generate_sampling.py: deterministic train/val splits, frame budgets, mixtures, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data.episode import EMBEDS_FILE
from data.sampling.generate_sampling import main, make_sampling, parse_args
from episode_factory import make_dataset, make_episode

T = 20  # episodes need >= T + 15 = 35 frames
LENGTHS = [40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95]  # 810 frames, all usable
OTHER_LENGTHS = [36, 44, 52, 60, 68, 76, 84, 92]  # 532 frames: the second dataset of a mixture


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[str, dict[str, int], dict[str, str]]:
    """One dataset of good episodes plus three that must be left out; returns (dir, {path: frames}, {bad path: why})."""
    root = tmp_path_factory.mktemp("contractor")
    paths = make_dataset(root, LENGTHS, seed=1)
    lengths = {str(path): n for path, n in zip(paths, LENGTHS)}
    short = make_episode(root / "short", T + 14, seed=2)  # one frame short of T + 15
    corrupt = make_episode(root / "corrupt", 60, seed=3)
    (corrupt / EMBEDS_FILE).unlink()
    leftover = root / ".episode_new.tmp-123-abcd"  # an EpisodeWriter that was killed mid-write
    shutil.copytree(paths[0], leftover)
    bad = {str(short): "34 frames, shorter than 35", str(corrupt): "missing mineclip_embeds.npy",
           str(leftover): "unfinished episode"}
    return str(root), lengths, bad


@pytest.fixture(scope="module")
def other_dataset(tmp_path_factory) -> tuple[str, dict[str, int]]:
    root = tmp_path_factory.mktemp("custom")
    paths = make_dataset(root, OTHER_LENGTHS, seed=2)
    return str(root), {str(path): n for path, n in zip(paths, OTHER_LENGTHS)}


def run(output_dir: Path, name: str, dataset_dirs: str, *extra: str) -> tuple[list[str], list[str], dict]:
    """Run the entrypoint; return (train list, val list, summary)."""
    argv = ["--name", name, "--output_dir", str(output_dir), "--dataset_dirs", dataset_dirs, "--T", str(T), *extra]
    assert main(argv) == 0
    train = (output_dir / f"{name}_train.txt").read_text().splitlines()
    val = (output_dir / f"{name}_val.txt").read_text().splitlines()
    return train, val, json.loads((output_dir / f"{name}_summary.json").read_text())


def frames_of(paths: list[str], lengths: dict[str, int]) -> int:
    return sum(lengths[path] for path in paths)


def assert_minimal_whole_episodes(paths: list[str], lengths: dict[str, int], budget: int) -> None:
    """Whole episodes reach the budget, and dropping the last one would fall short of it."""
    assert frames_of(paths, lengths) >= budget
    assert frames_of(paths[:-1], lengths) < budget


# ---------------------------------------------------------------------------------------------
# Splits


def test_same_inputs_same_files_other_seed_other_split(dataset, tmp_path):
    root, _, _ = dataset
    for out in ("a", "b"):
        run(tmp_path / out, "s", root, "--val_frames", "150", "--seed", "7")
    for suffix in ("_train.txt", "_val.txt", "_summary.json"):
        assert (tmp_path / "a" / f"s{suffix}").read_bytes() == (tmp_path / "b" / f"s{suffix}").read_bytes()
    train7, val7, _ = run(tmp_path / "a", "s", root, "--val_frames", "150", "--seed", "7")
    train8, val8, _ = run(tmp_path / "c", "s", root, "--val_frames", "150", "--seed", "8")
    assert (train7, val7) != (train8, val8)
    assert sorted(train7 + val7) == sorted(train8 + val8)  # the same episodes, split differently


def test_train_and_val_disjoint_and_all_rest_trains(dataset, tmp_path):
    root, lengths, _ = dataset
    train, val, summary = run(tmp_path, "s", root, "--val_frames", "200", "--train_frames", "-1")
    assert not set(train) & set(val)
    assert len(set(train)) == len(train) and len(set(val)) == len(val)
    assert sorted(train + val) == sorted(lengths)  # -1: every usable episode not in val trains
    assert_minimal_whole_episodes(val, lengths, 200)
    assert summary["train_frames"] == frames_of(train, lengths) == 810 - frames_of(val, lengths)
    assert summary["val_frames"] == frames_of(val, lengths)


def test_train_frames_budget(dataset, tmp_path):
    root, lengths, _ = dataset
    train, val, summary = run(tmp_path, "s", root, "--val_frames", "100", "--train_frames", "300")
    assert_minimal_whole_episodes(val, lengths, 100)
    assert_minimal_whole_episodes(train, lengths, 300)
    assert not set(train) & set(val)
    assert summary["train_frames"] == frames_of(train, lengths)
    assert len(train) + len(val) < len(lengths)  # some episodes are used by neither


def test_invalid_and_short_episodes_are_left_out(dataset, tmp_path):
    root, lengths, bad = dataset
    train, val, summary = run(tmp_path, "s", root, "--val_frames", "100")
    assert sorted(train + val) == sorted(lengths)
    left_out = summary["datasets"][root]["left_out"]
    assert len(left_out) == len(bad)
    for path, why in bad.items():
        assert any(line.startswith(path) and why in line for line in left_out), (path, left_out)
    # With a shorter T the short episode is usable (and the leftover and the broken one still are not).
    shorter = make_sampling(parse_args(["--name", "x", "--dataset_dirs", root, "--T", "19", "--val_frames", "0"]))
    short = next(path for path in bad if path.endswith("short"))
    assert short in shorter["train"] and len(shorter["summary"]["datasets"][root]["left_out"]) == 2


def test_mixed_weights_share_the_frame_budgets(dataset, other_dataset, tmp_path):
    (root_a, lengths_a, _), (root_b, lengths_b) = dataset, other_dataset
    lengths = {**lengths_a, **lengths_b}
    train, val, summary = run(
        tmp_path, "mix", f"{root_a},{root_b}", "--type", "mixed", "--dataset_weights", "0.8,0.2",
        "--val_frames", "150", "--train_frames", "400",
    )
    longest = max(lengths.values())
    for root, weight in ((root_a, 0.8), (root_b, 0.2)):
        ds_train = [path for path in train if path.startswith(root + "/")]
        ds_val = [path for path in val if path.startswith(root + "/")]
        assert_minimal_whole_episodes(ds_val, lengths, round(150 * weight))
        assert_minimal_whole_episodes(ds_train, lengths, round(400 * weight))
        assert frames_of(ds_train, lengths) < round(400 * weight) + longest  # within one episode
        assert summary["datasets"][root]["weight"] == pytest.approx(weight)
    assert len(train) + len(val) == len(set(train) | set(val))
    # The same split with the weights given un-normalised (4:1).
    same = make_sampling(parse_args([
        "--name", "mix", "--dataset_dirs", f"{root_a},{root_b}", "--type", "mixed", "--dataset_weights", "4,1",
        "--val_frames", "150", "--train_frames", "400", "--T", str(T),
    ]))
    assert (same["train"], same["val"]) == (train, val)


def test_mixed_weight_zero_takes_nothing_from_that_dataset(dataset, other_dataset, tmp_path):
    (root_a, lengths_a, _), (root_b, _) = dataset, other_dataset
    for train_frames in ("300", "-1"):
        train, val, _ = run(
            tmp_path, "mix", f"{root_a},{root_b}", "--type", "mixed", "--dataset_weights", "1,0",
            "--val_frames", "100", "--train_frames", train_frames,
        )
        assert train and val and set(train + val) <= set(lengths_a), train_frames


def test_val_from_reuses_the_val_list_exactly(dataset, tmp_path):
    root, lengths, _ = dataset
    _, first_val, _ = run(tmp_path, "first", root, "--val_frames", "200", "--seed", "1")
    assert first_val != sorted(first_val)  # shuffled: reusing it must keep this order, not sort it
    # Another seed and another val budget: the val list is still the first one, byte for byte.
    train, val, summary = run(tmp_path, "second", root, "--val_from", "first", "--val_frames", "500", "--seed", "2")
    assert (tmp_path / "second_val.txt").read_bytes() == (tmp_path / "first_val.txt").read_bytes()
    assert val == first_val
    assert not set(train) & set(first_val)
    assert sorted(train) == sorted(set(lengths) - set(first_val))
    assert summary["val_episodes"] == len(first_val)


def test_val_from_missing_file(dataset, tmp_path):
    with pytest.raises(SystemExit, match="--val_from file .*nope_val.txt not found"):
        main(["--name", "s", "--output_dir", str(tmp_path), "--dataset_dirs", dataset[0], "--val_from", "nope"])


# ---------------------------------------------------------------------------------------------
# Errors that say what to do


def test_missing_dataset_dir(tmp_path):
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(SystemExit, match=f"dataset directory {missing} does not exist.*1_generate_dataset.sh"):
        main(["--name", "s", "--output_dir", str(tmp_path), "--dataset_dirs", str(missing)])
    assert not (tmp_path / "s_train.txt").exists()


@pytest.mark.parametrize(
    "weights, expected",
    [
        ("0.8", "needs 2 non-negative numbers with a positive sum, got 0.8"),
        ("0.8,0.1,0.1", "needs 2 non-negative numbers"),
        ("1.2,-0.2", "needs 2 non-negative numbers"),
        ("0,0", "positive sum"),
        ("nan,1", "needs 2 non-negative numbers"),
        ("inf,1", "needs 2 non-negative numbers"),
        ("0.8,abc", "'0.8,abc' must be comma-separated numbers"),
        (None, "--type mixed needs --dataset_weights"),
    ],
)
def test_bad_weights(dataset, other_dataset, tmp_path, weights, expected):
    argv = ["--name", "s", "--output_dir", str(tmp_path), "--type", "mixed",
            "--dataset_dirs", f"{dataset[0]},{other_dataset[0]}"]
    if weights is not None:
        argv += ["--dataset_weights", weights]
    with pytest.raises(SystemExit, match=expected.replace(".", r"\.").replace("-", r"\-")) as caught:
        main(argv)
    assert "generate_sampling: " in str(caught.value)
    assert not (tmp_path / "s_train.txt").exists()


def test_neurips_takes_one_dataset(dataset, other_dataset, tmp_path):
    with pytest.raises(SystemExit, match="--type neurips takes one --dataset_dirs entry"):
        main(["--name", "s", "--output_dir", str(tmp_path), "--dataset_dirs", f"{dataset[0]},{other_dataset[0]}"])


def test_too_few_frames_for_val_says_how_many(dataset, tmp_path):
    root, _, _ = dataset
    with pytest.raises(SystemExit, match=rf"{root} has 810 frames in 12 usable episodes \(>= 35 frames each\); "
                                         r"validation alone needs 1,000\. Lower --val_frames"):
        main(["--name", "s", "--output_dir", str(tmp_path), "--dataset_dirs", root, "--T", str(T), "--val_frames", "1000"])


def test_too_few_frames_for_train_says_how_many(dataset, tmp_path):
    root, lengths, _ = dataset
    with pytest.raises(SystemExit, match=r"has (\d+) frames left for training in (\d+) episodes after validation; "
                                         r"5,000 frames needed") as caught:
        main(["--name", "s", "--output_dir", str(tmp_path), "--dataset_dirs", root, "--T", str(T),
              "--val_frames", "100", "--train_frames", "5000"])
    left = int(str(caught.value).split(" has ")[1].split(" frames")[0].replace(",", ""))
    val_frames = frames_of(make_sampling(parse_args(["--name", "s", "--dataset_dirs", root, "--T", str(T),
                                                      "--val_frames", "100"]))["val"], lengths)
    assert left == 810 - val_frames
    # Everything in validation: no episode left to train on.
    with pytest.raises(SystemExit, match="has 0 frames left for training in 0 episodes .*at least one episode needed"):
        main(["--name", "s", "--output_dir", str(tmp_path), "--dataset_dirs", root, "--T", str(T), "--val_frames", "810"])


def test_no_usable_episodes_at_all(tmp_path):
    root = tmp_path / "tiny"
    make_episode(root / "episode_000", 30, seed=0)
    with pytest.raises(SystemExit, match=r"has 0 frames in 0 usable episodes \(>= 35 frames each\)"):
        main(["--name", "s", "--output_dir", str(tmp_path), "--dataset_dirs", str(root), "--T", str(T), "--val_frames", "10"])


def test_sampling_files_feed_the_dataset(dataset, tmp_path):
    """The lists are directories the training dataset opens (a one-line smoke test of step 2 -> step 3)."""
    from data.minecraft_dataset import MinecraftDataset, read_sampling_file

    root, lengths, _ = dataset
    run(tmp_path, "s", root, "--val_frames", "100")
    val = MinecraftDataset(read_sampling_file(tmp_path / "s_val.txt"), T=T, train=False)
    assert sum(val.num_frames) == frames_of(read_sampling_file(tmp_path / "s_val.txt"), lengths)
    assert np.all(val[0]["firsts"][:1])
