"""Data diagnostic (data/diagnose_dataset.py): prints what training sees; fails loudly on broken data."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.episode import EMBED_DIM, EMBED_START
from data.diagnose_dataset import main
from data.sampling.generate_sampling import main as generate_sampling
from episode_factory import make_episode

REPO_ROOT = Path(__file__).resolve().parents[1]
T = 20
N_FRAMES = 80
EMBED_NORM = 3.0


def unit_norm_embeds(n: int, seed: int) -> np.ndarray:
    """Random rows of norm EMBED_NORM (NaN before frame 15), so the mean norm is known exactly."""
    embeds = np.random.default_rng(seed).normal(size=(n, EMBED_DIM))
    embeds = (EMBED_NORM * embeds / np.linalg.norm(embeds, axis=1, keepdims=True)).astype(np.float32)
    embeds[:EMBED_START] = np.nan
    return embeds


def make_sampling(root: Path, name: str, **episode_kwargs) -> Path:
    """Four episodes under root/<name> and the sampling <name> of them in root/samplings."""
    for i in range(4):
        make_episode(root / name / f"episode_{i}", N_FRAMES, seed=i, embeds=unit_norm_embeds(N_FRAMES, i), **episode_kwargs)
    samplings = root / "samplings"
    assert generate_sampling(["--name", name, "--output_dir", str(samplings), "--dataset_dirs", str(root / name),
                              "--T", str(T), "--val_frames", str(N_FRAMES)]) == 0
    return samplings


def diagnose(samplings: Path, name: str, *extra: str) -> list[str]:
    return ["--sampling", name, "--sampling_dir", str(samplings), "--T", str(T), *extra]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return make_sampling(tmp_path_factory.mktemp("good"), "good")


def test_good_dataset_passes_and_reports(good, capsys):
    assert main(diagnose(good, "good", "--p_uncond", "0")) == 0
    out = capsys.readouterr().out
    assert "obs keys: ['img', 'mineclip_embed']; action keys: ['buttons', 'camera']" in out
    assert f"img: shape (4, {T}, 128, 128, 3) (per batch) dtype uint8" in out
    # Every 16 consecutive frames hold grey levels 8 and 248 (episode_factory's index bands): the
    # range is that of raw 0..255 pixels, not normalised or clipped ones.
    low, high = map(int, re.search(r"values (\d+)\.\.(\d+)", out).groups())
    assert 4 <= low <= 12 and 244 <= high <= 252
    assert f"mineclip_embed: shape (4, {T}, 512), mean norm {EMBED_NORM:.4f}, unconditional (all-zero) samples 0/12" in out
    assert re.search(r"buttons pressed \(frames\): attack \d+", out)
    assert re.search(r"camera: moving in \d+/240 frames", out)
    assert "OK: nothing looks wrong" in out and "PROBLEM" not in out


def test_good_dataset_from_the_command_line(good):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "data" / "diagnose_dataset.py"),
                             *diagnose(good, "good", "--split", "val")],
                            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "good_val.txt: " in result.stdout and "OK: nothing looks wrong" in result.stdout


def test_all_zero_images_fail(tmp_path, capsys):
    samplings = make_sampling(tmp_path, "black", frames=np.zeros((N_FRAMES, 128, 128, 3), np.uint8))
    assert main(diagnose(samplings, "black")) != 0
    out = capsys.readouterr().out
    assert "values 0..0" in out
    assert "PROBLEM: all images are zero (black frames)" in out and "1 problem(s) found" in out


def test_constant_actions_fail(tmp_path, capsys):
    samplings = make_sampling(tmp_path, "still", env_buttons=np.zeros((N_FRAMES, 23), np.uint8),
                              env_camera=np.zeros((N_FRAMES, 2), np.float32))
    assert main(diagnose(samplings, "still")) != 0
    out = capsys.readouterr().out
    assert "PROBLEM: actions are constant (buttons 0, camera 60)" in out and "1 problem(s) found" in out


def test_every_goal_zero_fails(good, capsys):
    assert main(diagnose(good, "good", "--p_uncond", "1")) != 0
    assert "PROBLEM: every goal embedding is zero" in capsys.readouterr().out


@pytest.mark.parametrize("extra, expected", [
    (["--sampling", "nothing_here"], "--sampling nothing_here: {tmp}/nothing_here_train.txt not found; run 2_create_sampling.sh (or check --sampling_dir)"),
    (["--max_btwn_goals", "10"], "--max_btwn_goals 10: must be larger than --min_btwn_goals 15"),
    (["--p_uncond", "2"], "argument --p_uncond: 2 is out of range: must be >= 0 and <= 1 (see --help)"),
    (["--batch_size", "0"], "argument --batch_size: 0 is out of range: must be >= 1 (see --help)"),
])
def test_bad_settings_are_one_line_exit_2(tmp_path, capsys, extra, expected):
    (tmp_path / "finetune_train.txt").write_text("")
    with pytest.raises(SystemExit) as caught:
        main(["--sampling_dir", str(tmp_path), *extra])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err == f"diagnose_dataset.py: {expected.format(tmp=tmp_path)}\n"


def test_a_T_longer_than_the_episodes_is_a_setting_mistake_exit_2(good, capsys):
    """The sampling was made for T 20 (episodes of 80 frames): --T 100 needs 115 frames."""
    with pytest.raises(SystemExit) as caught:
        main(diagnose(good, "good") + ["--T", "100"])
    captured = capsys.readouterr()
    assert caught.value.code == 2 and captured.out == ""
    listed = (good / "good_train.txt").read_text().split()
    assert captured.err == (f"diagnose_dataset.py: --T 100: needs episodes of >= 115 frames; too short: "
                            f"{', '.join(f'{p} ({N_FRAMES} frames)' for p in listed)}; use the T the sampling was made "
                            "with (2_create_sampling.sh's T), or create the sampling again with this T\n")


def test_unreadable_episode_fails(good, tmp_path, capsys):
    listing = tmp_path / "broken_train.txt"
    listing.write_text((good / "good_train.txt").read_text() + str(tmp_path / "gone") + "\n")
    assert main(diagnose(tmp_path, "broken")) != 0
    assert f"FAIL: {tmp_path / 'gone'}: episode directory does not exist" in capsys.readouterr().out
