"""Step 2, generate_sampling.py: deterministic train/val splits, frame budgets, mixtures, clear errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.episode import EMBEDS_FILE
from data.sampling.generate_sampling import main, make_sampling, parse_args
from episode_factory import make_dataset, make_episode

REPO_ROOT = Path(__file__).resolve().parents[1]
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


def refusal(stderr: str) -> str:
    """The one refusal line among stderr's output (tqdm's progress bars share the stream)."""
    lines = [line for line in re.split(r"[\r\n]", stderr) if line.startswith("generate_sampling.py: ")]
    assert len(lines) == 1, stderr
    return lines[0]


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
        run(tmp_path / out, "s", root, "--val_frames", "150", "--split_seed", "7")
    for suffix in ("_train.txt", "_val.txt", "_summary.json"):
        assert (tmp_path / "a" / f"s{suffix}").read_bytes() == (tmp_path / "b" / f"s{suffix}").read_bytes()
    train7, val7, _ = run(tmp_path / "a", "s", root, "--val_frames", "150", "--split_seed", "7")
    train8, val8, _ = run(tmp_path / "c", "s", root, "--val_frames", "150", "--split_seed", "8")
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
            tmp_path / train_frames, "mix", f"{root_a},{root_b}", "--type", "mixed", "--dataset_weights", "1,0",
            "--val_frames", "100", "--train_frames", train_frames,
        )
        assert train and val and set(train + val) <= set(lengths_a), train_frames


def test_val_from_reuses_the_val_list_exactly(dataset, tmp_path):
    root, lengths, _ = dataset
    _, first_val, _ = run(tmp_path, "first", root, "--val_frames", "200", "--split_seed", "1")
    assert first_val != sorted(first_val)  # shuffled: reusing it must keep this order, not sort it
    # Another seed and another val budget: the val list is still the first one, byte for byte.
    train, val, summary = run(tmp_path, "second", root, "--val_from", "first", "--val_frames", "500", "--split_seed", "2")
    assert (tmp_path / "second_val.txt").read_bytes() == (tmp_path / "first_val.txt").read_bytes()
    assert val == first_val
    assert not set(train) & set(first_val)
    assert sorted(train) == sorted(set(lengths) - set(first_val))
    assert summary["val_episodes"] == len(first_val)


# ---------------------------------------------------------------------------------------------
# Mixed samplings keep the weights for every budget


def pools(output_dir: Path, roots: list[str], weights: str) -> dict[str, int]:
    """Frames each dataset has left for training after the validation split of the same settings."""
    _, _, summary = run(output_dir, "probe", ",".join(roots), "--type", "mixed", "--dataset_weights", weights,
                        "--val_frames", "150")
    return {root: sum(LENGTHS if i == 0 else OTHER_LENGTHS) - summary["datasets"][root]["val_frames"]
            for i, root in enumerate(roots)}


@pytest.mark.parametrize("weights", [(0.8, 0.2), (0.2, 0.8), (0.5, 0.5)])
def test_mixed_all_data_keeps_the_weights_within_one_episode(dataset, other_dataset, tmp_path, capsys, weights):
    """--train_frames -1: the largest training set that meets the weights (one dataset gives all it has left)."""
    (root_a, lengths_a, _), (root_b, lengths_b) = dataset, other_dataset
    lengths = {**lengths_a, **lengths_b}
    asked = dict(zip((root_a, root_b), weights))
    train, val, summary = run(tmp_path, "mix", f"{root_a},{root_b}", "--type", "mixed",
                              "--dataset_weights", ",".join(map(str, weights)), "--val_frames", "150")
    out = capsys.readouterr().out
    total_train = frames_of(train, lengths)
    used_up = []
    for root, all_lengths in ((root_a, lengths_a), (root_b, lengths_b)):
        ds_train = [p for p in train if p.startswith(root + "/")]
        ds_val = [p for p in val if p.startswith(root + "/")]
        frames = frames_of(ds_train, lengths)
        assert abs(frames - asked[root] * total_train) <= max(all_lengths.values()), (root, frames, total_train)
        d = summary["datasets"][root]
        assert d["train_frames"] == frames and d["train_fraction"] == pytest.approx(frames / total_train)
        assert f"{root}: train {len(ds_train)} episodes / {frames:,} frames ({frames / total_train:.1%} of training, " \
               f"weight {asked[root]:.1%})" in out
        used_up.append(sorted(ds_train + ds_val) == sorted(all_lengths))
    assert any(used_up)  # the dataset that limits the mixture gives every episode it has


def test_mixed_explicit_budget_keeps_the_weights_within_one_episode(dataset, other_dataset, tmp_path):
    (root_a, lengths_a, _), (root_b, lengths_b) = dataset, other_dataset
    lengths = {**lengths_a, **lengths_b}
    train, _, summary = run(tmp_path, "mix", f"{root_a},{root_b}", "--type", "mixed", "--dataset_weights", "0.3,0.7",
                            "--val_frames", "100", "--train_frames", "500")
    total_train = frames_of(train, lengths)
    for root, weight in ((root_a, 0.3), (root_b, 0.7)):
        frames = summary["datasets"][root]["train_frames"]
        assert frames >= round(500 * weight)
        assert abs(frames - weight * total_train) <= max(lengths.values())


def test_mixed_budget_the_data_cannot_meet_says_what_each_dataset_can_give(dataset, other_dataset, tmp_path, capsys):
    (root_a, _, _), (root_b, _) = dataset, other_dataset
    available = pools(tmp_path / "probe", [root_a, root_b], "0.5,0.5")
    capsys.readouterr()
    largest = int(min(n / 0.5 for n in available.values()))
    argv = ["--name", "s", "--output_dir", str(tmp_path), "--dataset_dirs", f"{root_a},{root_b}", "--T", str(T),
            "--type", "mixed", "--dataset_weights", "0.5,0.5", "--val_frames", "150", "--train_frames", "1000"]
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert refusal(capsys.readouterr().err) == (
        f"generate_sampling.py: --train_frames 1000: is more than the data can give after validation: "
        f"{root_a} can give {available[root_a]:,} of the 500 asked, {root_b} can give {available[root_b]:,} of the 500 "
        f"asked; use at most --train_frames {largest} (-1: the most that keeps the weights), lower --val_frames or add episodes")
    assert not (tmp_path / "s_train.txt").exists()
    train, _, _ = run(tmp_path, "s", f"{root_a},{root_b}", "--type", "mixed", "--dataset_weights", "0.5,0.5",
                      "--val_frames", "150", "--train_frames", str(largest))
    assert train  # the budget the message names works


# ---------------------------------------------------------------------------------------------
# Labelling rules: episodes converted with different rules are not mixed unless asked


def labelled_dataset(root: Path, n: int, seed: int, conversion: dict | None) -> str:
    for i in range(n):
        make_episode(root / f"episode_{i:03d}", 50, seed=seed * 100 + i, conversion=conversion)
    return str(root)


ORIGINAL_RULES = {"camera_labels": "truncated", "null_filter": "env"}
PAPER_RULES = {"camera_labels": "float", "null_filter": "agent"}


def test_episodes_with_different_labelling_rules_are_refused_naming_both_groups(tmp_path, capsys):
    a = labelled_dataset(tmp_path / "a", 3, 1, ORIGINAL_RULES)
    b = labelled_dataset(tmp_path / "b", 2, 2, PAPER_RULES)
    argv = ["--name", "mix", "--output_dir", str(tmp_path / "out"), "--dataset_dirs", f"{a},{b}", "--T", str(T),
            "--type", "mixed", "--dataset_weights", "0.5,0.5", "--val_frames", "50"]
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = refusal(capsys.readouterr().err)
    assert err.startswith(f"generate_sampling.py: --dataset_dirs {a},{b}: episodes labelled with different rules: ")
    assert "with camera_labels=truncated, null_filter=env (e.g. " + a + "/episode_" in err
    assert "with camera_labels=float, null_filter=agent (e.g. " + b + "/episode_" in err
    assert err.endswith("convert them again with the same --camera_labels and --null_filter, or pass --allow_mixed_labels")
    assert not (tmp_path / "out").exists()
    train, val, summary = run(tmp_path / "out", "mix", f"{a},{b}", "--type", "mixed", "--dataset_weights", "0.5,0.5",
                              "--val_frames", "50", "--allow_mixed_labels")
    rules = summary["labelling_rules"]
    assert sum(rules.values()) == len(train + val) and len(rules) == 2


def test_old_metadata_and_the_original_layout_count_as_the_original_rules(tmp_path):
    """truncate_camera (the key before camera_labels) and the original pickle layout (made by the original rules)."""
    from episode_factory import write_legacy_episode

    new = labelled_dataset(tmp_path / "new", 2, 1, ORIGINAL_RULES)
    old = labelled_dataset(tmp_path / "old", 2, 2, {"truncate_camera": True, "null_filter": "env"})
    for i in range(2):
        write_legacy_episode(tmp_path / "legacy" / f"episode_{i}", n=50, seed=i)
    dirs = f"{new},{old},{tmp_path / 'legacy'}"
    train, val, summary = run(tmp_path / "out", "mix", dirs, "--type", "mixed", "--dataset_weights", "1,1,1",
                              "--val_frames", "0", "--trust_legacy_pickle")
    assert summary["labelling_rules"] == {"camera_labels=truncated, null_filter=env": 6} and len(train) == 6
    # and an old episode converted with float degrees is another group
    labelled_dataset(tmp_path / "float", 2, 3, {"truncate_camera": False, "null_filter": "env"})
    with pytest.raises(SystemExit):
        main(["--name", "x", "--output_dir", str(tmp_path / "out"), "--dataset_dirs", f"{new},{tmp_path / 'float'}",
              "--T", str(T), "--type", "mixed", "--dataset_weights", "1,1", "--val_frames", "0"])


DEMO = {"mineclip": {"weights": None, "demo_random_weights": True, "config": "tiny, random (demo only)"}}
REAL = {"mineclip": {"weights": "/w/attn.pth", "demo_random_weights": False, "config": "attn", "sha256": "0" * 64}}


def demo_dataset(root: Path, sources: list[dict]) -> str:
    for i, source in enumerate(sources):
        make_episode(root / f"episode_{i:03d}", 50, seed=i, conversion=ORIGINAL_RULES, source=source)
    return str(root)


# name -> (episode sources, extra arguments, expected: the refusal after "generate_sampling.py: " or the warning line)
DEMO_CASES = {
    "demo episodes": ([DEMO] * 3, [], "--dataset_dirs {root}: 3 of the 3 chosen episodes have goal embeddings from random "
                      "MineCLIP weights (step 1's demo flag), e.g. {first}: their goals mean nothing to train on; convert "
                      "them again in step 1 with the real attn.pth (MINECLIP_WEIGHTS, not DEMO_RANDOM_MINECLIP), or pass "
                      "--allow_demo_embeddings (ALLOW_DEMO_EMBEDDINGS=1) for a pipeline demo"),
    "one demo episode among real ones": ([REAL, DEMO, REAL], [], "--dataset_dirs {root}: 1 of the 3 chosen episodes have "
                                         "goal embeddings from random MineCLIP weights (step 1's demo flag), e.g. "
                                         "{root}/episode_001: their goals mean nothing to train on; convert them again "
                                         "in step 1 with the real attn.pth (MINECLIP_WEIGHTS, not DEMO_RANDOM_MINECLIP), "
                                         "or pass --allow_demo_embeddings (ALLOW_DEMO_EMBEDDINGS=1) for a pipeline demo"),
    "demo episodes, allowed": ([DEMO] * 3, ["--allow_demo_embeddings"], "WARNING: 3 episodes have goal embeddings from "
                               "random MineCLIP weights (--allow_demo_embeddings): a pipeline demo, not data to train an "
                               "agent on"),
    "real weights": ([REAL] * 3, [], None),
    "nothing recorded (older or other writers)": ([{}] * 3, [], None),
}


@pytest.mark.parametrize("case", list(DEMO_CASES))
def test_demo_embeddings_are_refused_unless_allowed(tmp_path, capsys, case):
    sources, extra, expected = DEMO_CASES[case]
    root = demo_dataset(tmp_path / "data", sources)
    argv = ["--name", "s", "--output_dir", str(tmp_path / "out"), "--dataset_dirs", root, "--T", str(T),
            "--val_frames", "50", *extra]
    if expected is not None and not expected.startswith("WARNING"):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        captured = capsys.readouterr()
        assert caught.value.code == 2 and captured.out == ""
        first = refusal(captured.err).split(", e.g. ")[1].split(":")[0]  # the shuffle decides which demo episode
        assert refusal(captured.err) == "generate_sampling.py: " + expected.format(root=root, first=first)
        assert first.startswith(root + "/episode_") and not (tmp_path / "out").exists()
        return
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    summary = json.loads((tmp_path / "out" / "s_summary.json").read_text())
    assert summary["demo_embedding_episodes"] == (3 if expected else 0)
    assert [line for line in out if line.startswith("WARNING")] == ([expected] if expected else [])


def test_val_from_episodes_count_in_the_labelling_check(tmp_path, capsys):
    a = labelled_dataset(tmp_path / "a", 3, 1, ORIGINAL_RULES)
    b = labelled_dataset(tmp_path / "b", 3, 2, PAPER_RULES)
    run(tmp_path / "out", "first", a, "--val_frames", "50")
    with pytest.raises(SystemExit):
        main(["--name", "second", "--output_dir", str(tmp_path / "out"), "--dataset_dirs", b, "--T", str(T),
              "--val_from", "first"])
    assert "episodes labelled with different rules" in refusal(capsys.readouterr().err)


# ---------------------------------------------------------------------------------------------
# Settings and data that cannot work: one line naming the setting, exit status 2, nothing written


def bad_settings_cases(root: str, other: str, tmp: Path) -> list[tuple[list[str], str]]:
    (tmp / "empty").mkdir(exist_ok=True)
    (tmp / "a_file").write_text("x")
    mixed = ["--type", "mixed", "--dataset_dirs", f"{root},{other}"]
    return [
        (mixed + ["--dataset_weights", "0.8"], "--dataset_weights 0.8: has 1 weights for 2 dataset directories; give one per directory"),
        (mixed + ["--dataset_weights", "0.8,0.1,0.1"], "--dataset_weights 0.8,0.1,0.1: has 3 weights for 2 dataset directories"),
        (mixed + ["--dataset_weights", "1.2,-0.2"], "argument --dataset_weights: -0.2 is out of range: must be >= 0 (see --help)"),
        (mixed + ["--dataset_weights", "0,0"], "--dataset_weights 0.0,0.0: must have a positive sum"),
        (mixed + ["--dataset_weights", "nan,1"], "argument --dataset_weights: 'nan' is not a finite number (see --help)"),
        (mixed + ["--dataset_weights", "0.8,abc"], "argument --dataset_weights: 'abc' is not a number (see --help)"),
        (mixed + ["--dataset_weights", "0.8,"], "argument --dataset_weights: '0.8,' must be comma-separated numbers, e.g. 0.8,0.2 (see --help)"),
        (mixed, "--dataset_weights: --type mixed needs one weight per dataset directory; e.g. --dataset_weights 0.8,0.2"),
        (["--dataset_dirs", f"{root},{other}"], f"--dataset_dirs {root},{other}: --type neurips takes one dataset directory; use --type mixed with --dataset_weights for several"),
        (["--dataset_dirs", root, "--dataset_weights", "1"], "--dataset_weights 1.0: is for --type mixed; leave it out, or use --type mixed"),
        (["--dataset_dirs", f"{root},{root}", "--type", "mixed", "--dataset_weights", "1,1"], f"--dataset_dirs {root},{root}: names a directory twice"),
        (["--dataset_dirs", str(tmp / "nope")], f"--dataset_dirs {tmp / 'nope'}: not found; run step 1 (1_generate_dataset.sh) first, or name the folder it wrote"),
        (["--dataset_dirs", str(tmp / "a_file")], f"--dataset_dirs {tmp / 'a_file'}: is a file, not a directory; run step 1"),
        (["--dataset_dirs", str(tmp / "empty")], f"--dataset_dirs {tmp / 'empty'}: the folder has no episodes; convert some into it with step 1"),
        (["--dataset_dirs", root, "--train_frames", "0"], "argument --train_frames: 0 is out of range: must be >= 1 or -1 (see --help)"),
        (["--dataset_dirs", root, "--val_frames", "-5"], "argument --val_frames: -5 is out of range: must be >= 0 (see --help)"),
        (["--dataset_dirs", root, "--T", "0"], "argument --T: 0 is out of range: must be >= 1 (see --help)"),
        (["--dataset_dirs", root, "--seed", "3"], "--seed 3: was renamed; use --split_seed 3 (the training seed is set in step 3)"),
        (["--dataset_dirs", root, "--name", "a/b"], "--name 'a/b': must be a plain file-name part; e.g. --name finetune"),
        (["--dataset_dirs", root, "--val_from", "nope"], f"--val_from nope: {tmp / 'nope_val.txt'} not found; name a sampling that exists in --output_dir"),
        (["--dataset_dirs", root, "--val_frames", "1000"], f"--val_frames 1000: {root} has 810 frames in 12 usable episodes (>= 35 frames each); validation alone needs 1,000; lower --val_frames or add episodes"),
        (["--dataset_dirs", root, "--val_frames", "100", "--train_frames", "5000"], "--train_frames 5000: is more than the data can give after validation: "),
        (["--dataset_dirs", root, "--val_frames", "810"], f"--val_frames: {root} has no episode left for training after validation (12 episodes, 810 frames, validate)"),
        (["--dataset_dirs", root, "--T", "100"], f"--dataset_dirs {root}: has no usable episode of >= 115 frames: 15 left out (e.g. "),
    ]


def test_bad_settings_and_data_are_one_line_exit_2_nothing_written(dataset, other_dataset, tmp_path, capsys):
    root, other = dataset[0], other_dataset[0]
    for argv, expected in bad_settings_cases(root, other, tmp_path):
        with pytest.raises(SystemExit) as caught:
            main(["--name", "s", "--output_dir", str(tmp_path), "--T", str(T), *argv] if "--name" not in argv
                 else ["--output_dir", str(tmp_path), "--T", str(T), *argv])
        assert caught.value.code == 2, argv
        line = refusal(capsys.readouterr().err)
        assert line.startswith(f"generate_sampling.py: {expected}"), (argv, line)
        assert not list(tmp_path.glob("*_train.txt")), argv


# An existing sampling of the same --name: (what is done to the first run's files, the second run's extra arguments,
# the refusal after "generate_sampling.py: " or None when the second run succeeds, the files the second run leaves)
FIRST = ["--val_frames", "150", "--split_seed", "7"]
REFUSAL = ("--name s: {d}/s_train.txt and {d}/s_val.txt already hold a different sampling; choose another --name "
           "(NAME in 2_create_sampling.sh), or replace it with --overwrite (OVERWRITE=1)")
EXISTING_ROWS = {
    "same settings again": (None, FIRST, None, "kept"),
    "another split seed": (None, ["--val_frames", "150", "--split_seed", "8"], REFUSAL, "kept"),
    "another validation budget": (None, ["--val_frames", "300", "--split_seed", "7"], REFUSAL, "kept"),
    "a list edited by hand": ("edit", FIRST, REFUSAL, "kept"),
    "only the train list left": ("drop_val", FIRST,
                                 "--name s: {d}/s_train.txt already holds a different sampling; choose another --name "
                                 "(NAME in 2_create_sampling.sh), or replace it with --overwrite (OVERWRITE=1)", "kept"),
    "a folder in the way, even with --overwrite": ("folder", [*FIRST, "--overwrite"],
                                                   "--name s: {d}/s_val.txt is not a file; move it away, or choose another --name", "kept"),
    "another split seed with --overwrite": (None, ["--val_frames", "150", "--split_seed", "8", "--overwrite"], None, "replaced"),
}


@pytest.mark.parametrize("row", sorted(EXISTING_ROWS))
def test_an_existing_sampling_is_kept_unless_the_same_or_overwrite(row, dataset, tmp_path, capsys):
    root = dataset[0]
    change, second, expected, outcome = EXISTING_ROWS[row]
    out = tmp_path / "samplings"
    run(out, "s", root, *FIRST)
    if change == "edit":
        (out / "s_train.txt").write_text((out / "s_train.txt").read_text() + "extra/episode\n")
    elif change == "drop_val":
        (out / "s_val.txt").unlink()
    elif change == "folder":
        (out / "s_val.txt").unlink()
        (out / "s_val.txt").mkdir()
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    argv = ["--name", "s", "--output_dir", str(out), "--dataset_dirs", root, "--T", str(T), *second]
    if expected is None:
        assert main(argv) == 0
    else:
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
        assert refusal(capsys.readouterr().err) == "generate_sampling.py: " + expected.format(d=out)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir() if p.is_file()}
    if outcome == "kept":
        assert after == before  # byte-identical and not even rewritten
        if expected is None:
            assert "Unchanged: " in capsys.readouterr().out
    else:
        run(tmp_path / "fresh", "s", root, *second[:-1])
        for name in ("s_train.txt", "s_val.txt", "s_summary.json"):
            assert (out / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes() != before[name][0]


def test_help_shows_defaults_and_the_examples_unbroken():
    from data.sampling.generate_sampling import build_parser

    text = build_parser().format_help()
    assert "--output_dir data/samplings \\\n        --dataset_dirs data/dataset_contractor" in text
    for option, default in (("--split_seed", "0"), ("--val_frames", "100000"), ("--train_frames", "-1"), ("--T", "320")):
        entry = re.search(rf"\n  {option} \S+\s+(.*?)(?=\n  -|\Z)", text, re.S).group(1)
        assert f"(default: {default})" in " ".join(entry.split()), option


def test_script_refuses_the_old_seed_and_passes_split_seed(dataset, tmp_path):
    """SEED is the training seed (step 3): an exported SEED must not change the split silently."""
    root = dataset[0]
    env = {k: v for k, v in os.environ.items() if k != "SEED"}
    env.update(PYTHON=sys.executable, NAME="s", OUTPUT_DIR=str(tmp_path / "script"), DATASET_DIRS=root, T=str(T),
               VAL_FRAMES="150")
    refused = subprocess.run(["bash", "2_create_sampling.sh"], cwd=REPO_ROOT, env={**env, "SEED": "5"},
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and not (tmp_path / "script").exists()
    assert refused.stderr.strip() == ("2_create_sampling.sh: SEED is set (5) but no longer chooses the split; "
                                      "set SPLIT_SEED instead (and unset SEED)")
    done = subprocess.run(["bash", "2_create_sampling.sh"], cwd=REPO_ROOT, env={**env, "SPLIT_SEED": "7"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run(tmp_path / "direct", "s", root, "--val_frames", "150", "--split_seed", "7")
    for suffix in ("_train.txt", "_val.txt"):
        assert (tmp_path / "script" / f"s{suffix}").read_bytes() == (tmp_path / "direct" / f"s{suffix}").read_bytes()


def test_sampling_files_feed_the_dataset(dataset, tmp_path):
    """The lists are directories the training dataset opens (a one-line smoke test of step 2 -> step 3)."""
    from data.minecraft_dataset import MinecraftDataset, read_sampling_file

    root, lengths, _ = dataset
    run(tmp_path, "s", root, "--val_frames", "100")
    val = MinecraftDataset(read_sampling_file(tmp_path / "s_val.txt"), T=T, train=False)
    assert sum(val.num_frames) == frames_of(read_sampling_file(tmp_path / "s_val.txt"), lengths)
    assert np.all(val[0]["firsts"][:1])
