"""Step 1 end to end on generated recordings: local HTTP index, resumed downloads, bad inputs, kills, custom data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.episode import load_episode, validate_episode
from data.generation import convert_custom_data, convert_from_contractor
from data.generation.contractor_actions import load_actions_file
from data.generation.contractor_index import IndexFileError, load_index, recordings
from data.generation.synthetic_contractor import write_synthetic_recording
from data.video_io import VideoWriter, read_video_frames
from local_http import serve
from vpt_model.action_space import ENV_BUTTONS, env_arrays_to_joint

REPO_ROOT = Path(__file__).resolve().parents[1]
FRAMES = 120


@pytest.fixture(scope="module")
def recordings_dir(tmp_path_factory) -> Path:
    """Three generated 640x360 contractor-format recordings (made once for the module)."""
    root = tmp_path_factory.mktemp("recordings")
    for i in range(3):
        write_synthetic_recording(root, f"rec{i}", FRAMES, seed=10 + i)
    return root


def _serve_files(state, recordings_dir: Path, names: list[str]) -> None:
    for name in names:
        for suffix in (".mp4", ".jsonl"):
            state.files[f"/data/{name}{suffix}"] = (recordings_dir / f"{name}{suffix}").read_bytes()


def _convert(tmp_path: Path, index: str, *extra: str) -> int:
    return convert_from_contractor.main([
        "--index", index, "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"),
        "--num_episodes", "-1", "--demo_random_mineclip", "--min_timesteps", "20", "--device", "cpu",
        "--download_workers", "2", "--retries", "3", *extra,
    ])


def test_http_index_converts_resumes_cut_download_and_second_run_does_nothing(tmp_path, recordings_dir, capsys):
    with serve() as (url, state):
        _serve_files(state, recordings_dir, ["rec0", "rec1", "rec2"])
        state.files["/index.json"] = json.dumps(
            {"basedir": url + "/", "relpaths": ["data/rec0.mp4", "data/rec1", "data/rec2.mp4"]}).encode()
        size = len(state.files["/data/rec1.mp4"])
        state.cut_once["/data/rec1.mp4"] = size // 3  # the first response dies a third of the way in
        assert _convert(tmp_path, url + "/index.json") == 0
        ranged = [r for path, r in state.requests if path == "/data/rec1.mp4" and r]
        assert ranged == [f"bytes={size // 3}-"]  # resumed where it broke, not from zero
        out = tmp_path / "out"
        episodes = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        assert episodes == ["data_rec0", "data_rec1", "data_rec2"]
        assert all(validate_episode(out / e).ok for e in episodes)
        assert not any((tmp_path / "cache").glob("data_rec*"))  # the cache is removed once converted
        n_requests = len(state.requests)
        capsys.readouterr()
        assert _convert(tmp_path, url + "/index.json") == 0
        assert "0 to convert" in capsys.readouterr().out
        assert len(state.requests) == n_requests  # nothing downloaded again (the index is cached too)


def test_converted_actions_and_frames_match_the_recording(tmp_path, recordings_dir):
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"basedir": str(recordings_dir), "relpaths": ["rec0"]}))
    assert _convert(tmp_path, str(index)) == 0
    episode = load_episode(tmp_path / "out" / "rec0")
    actions = load_actions_file(recordings_dir / "rec0.jsonl")
    keep = ~actions.agent_null
    assert episode.num_frames == keep.sum() < FRAMES  # null frames were dropped
    np.testing.assert_array_equal(episode.env_buttons, actions.env_buttons[keep])
    np.testing.assert_array_equal(episode.env_camera, actions.env_camera[keep])
    joint_b, joint_c = env_arrays_to_joint(actions.env_buttons[keep], actions.env_camera[keep])
    np.testing.assert_array_equal(episode.agent_buttons, joint_b)
    np.testing.assert_array_equal(episode.agent_camera, joint_c)
    source = [f for f, k in zip(read_video_frames(recordings_dir / "rec0.mp4"), keep) if k]
    expected = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_LINEAR) for f in source])
    got = episode.read_frames(0, episode.num_frames)
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 3.0  # h264 at CRF 12
    assert np.isnan(episode.embeds[:15]).all() and np.isfinite(episode.embeds[15:]).all()
    assert episode.metadata["source"]["mineclip"]["demo_random_weights"] is True
    assert (recordings_dir / "rec0.mp4").exists()  # local sources are read in place, never deleted


def test_each_bad_recording_fails_alone_and_the_run_goes_on(tmp_path, recordings_dir, capsys):
    with serve() as (url, state):
        _serve_files(state, recordings_dir, ["rec0"])
        good_video = state.files["/data/rec0.mp4"]
        good_lines = state.files["/data/rec0.jsonl"]
        state.files["/data/corrupt.mp4"] = b"\x00not an mp4" * 1000
        state.files["/data/corrupt.jsonl"] = good_lines
        state.files["/data/cut_jsonl.mp4"] = good_video
        state.files["/data/cut_jsonl.jsonl"] = good_lines[: len(good_lines) // 2 + 7]
        state.files["/data/short_jsonl.mp4"] = good_video
        state.files["/data/short_jsonl.jsonl"] = b"".join(good_lines.splitlines(keepends=True)[:-10])
        state.files["/data/no_video.jsonl"] = good_lines  # the mp4 is missing: 404
        state.files["/data/one_short.mp4"] = good_video  # a line missing at the end: within the tolerance
        state.files["/data/one_short.jsonl"] = b"".join(good_lines.splitlines(keepends=True)[:-1])
        relpaths = ["data/rec0", "data/one_short", "data/corrupt", "data/cut_jsonl", "data/short_jsonl", "data/no_video",
                    "../escape", "/etc/passwd", "http://evil.example/x", "data/../../up", "data\\win"]
        state.files["/index.json"] = json.dumps({"basedir": url + "/", "relpaths": relpaths}).encode()
        assert _convert(tmp_path, url + "/index.json") == 1
        out = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["data_one_short", "data_rec0"]
    fails = {line.split()[1].rstrip(":"): line for line in out.splitlines() if line.startswith("FAIL")}
    assert set(fails) == {"data_corrupt", "data_cut_jsonl", "data_short_jsonl", "data_no_video"}
    assert "corrupt" in fails["data_corrupt"] or "invalid" in fails["data_corrupt"].lower()
    assert "not valid JSON" in fails["data_cut_jsonl"]
    assert f"{FRAMES} video frames but {FRAMES - 10} action lines" in fails["data_short_jsonl"]
    assert "404" in fails["data_no_video"]
    assert out.count("REFUSED") == 5
    assert not any(tmp_path.rglob("passwd")) and not (tmp_path.parent / "escape").exists()


def test_relpath_safety_for_local_and_remote_bases(tmp_path):
    found, refused = recordings({"basedir": "https://host.example/base", "relpaths": ["a/b", "a/../../c", "//other.host/x"]})
    assert [r.video for r in found] == ["https://host.example/base/a/b.mp4"]
    assert len(refused) == 2
    (tmp_path / "inside").mkdir()
    found, refused = recordings({"basedir": str(tmp_path / "inside"), "relpaths": ["ok", "../outside"]})
    assert [r.name for r in found] == ["ok"] and "outside" in refused[0]
    with pytest.raises(IndexFileError, match="neither a known version"):
        load_index(str(tmp_path / "missing.json"), tmp_path)


def test_too_short_recordings_are_skipped_once_and_remembered(tmp_path, recordings_dir, capsys):
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"basedir": str(recordings_dir), "relpaths": ["rec1"]}))
    assert _convert(tmp_path, str(index), "--min_timesteps", "100000") == 0
    assert "SKIP rec1" in capsys.readouterr().out
    assert (tmp_path / "out" / ".skipped" / "rec1.json").exists()
    assert _convert(tmp_path, str(index), "--min_timesteps", "100000") == 0
    assert "0 to convert" in capsys.readouterr().out
    assert _convert(tmp_path, str(index), "--retry_skipped") == 0  # with the default minimum it converts
    assert validate_episode(tmp_path / "out" / "rec1").ok


def test_sigkill_mid_conversion_leaves_nothing_that_validates(tmp_path, recordings_dir):
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"basedir": str(recordings_dir), "relpaths": ["rec2"]}))
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO_ROOT / "data/generation/convert_from_contractor.py"), "--index", str(index),
           "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache"), "--num_episodes", "-1",
           "--demo_random_mineclip", "--min_timesteps", "20", "--device", "cpu", "--batch_size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and not any(out.glob(".rec2.tmp-*/frames.mp4")):
        time.sleep(0.01)
    assert any(out.glob(".rec2.tmp-*")), "the conversion never started writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "rec2").exists()
    leftovers = list(out.glob(".rec2.tmp-*"))
    assert leftovers and not validate_episode(leftovers[0]).ok
    with pytest.raises(Exception):
        load_episode(leftovers[0])
    assert _convert(tmp_path, str(index)) == 0  # a re-run converts it properly
    assert validate_episode(out / "rec2").ok


def _write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    with VideoWriter(path, fps=fps) as writer:
        for frame in frames:
            writer.write(frame)


def test_custom_recordings_resample_to_20fps_and_merge_actions(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (90, 72, 96, 3), dtype=np.uint8)  # 3 s at 30 fps, an odd resolution
    episode = tmp_path / "in" / "episode_001"
    episode.mkdir(parents=True)
    _write_video(episode / "video.mp4", frames, fps=30)
    lines = [{"forward": 1, "camera": [0.0, 1.0]} if i % 3 != 2 else {"jump": 1, "camera": [0.5, 0.0]} for i in range(90)]
    (episode / "actions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    code = convert_custom_data.main(["--input_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"),
                                     "--demo_random_mineclip", "--min_timesteps", "16", "--device", "cpu"])
    assert code == 0
    converted = load_episode(tmp_path / "out" / "episode_001")
    assert converted.num_frames == 60  # 90 frames at 30 fps -> 60 at 20 fps
    assert converted.metadata["source"]["source_fps"] == pytest.approx(30)
    # output frame k covers source frames floor(1.5 k) .. floor(1.5 (k + 1)) - 1: their actions are merged
    k = 1  # source frames 1, 2 -> forward (frame 1) and jump (frame 2), camera summed
    row = dict(zip(ENV_BUTTONS, converted.env_buttons[k]))
    assert row["forward"] == 1 and row["jump"] == 1 and sum(row.values()) == 2
    np.testing.assert_allclose(converted.env_camera[k], [0.5, 1.0])


def test_custom_recordings_without_actions_stop_with_a_clear_message(tmp_path):
    episode = tmp_path / "in" / "episode_002"
    episode.mkdir(parents=True)
    _write_video(episode / "video.mp4", np.zeros((20, 64, 64, 3), np.uint8), fps=20)
    with pytest.raises(SystemExit, match="no actions.jsonl.*episode_002.*labelling actions from video"):
        convert_custom_data.main(["--input_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"),
                                  "--demo_random_mineclip"])


MINESTUDIO = "minestudio==1.1.6"


@pytest.fixture(scope="module")
def real_gameplay_clip(tmp_path_factory) -> Path:
    """A real 640x360 Minecraft clip from the minestudio wheel on PyPI (skipped when it cannot be fetched)."""
    cache = Path(os.environ.get("STEVE1_TEST_CACHE", Path.home() / ".cache" / "steve1-toolkit-tests"))
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob("minestudio-*.whl"))
    if not wheels:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                                 "-d", str(cache), MINESTUDIO], capture_output=True, text=True, timeout=300)
        wheels = list(cache.glob("minestudio-*.whl"))
        if result.returncode != 0 or not wheels:
            pytest.skip(f"could not fetch {MINESTUDIO} from PyPI for real gameplay frames: {result.stderr.strip()[-200:]}")
    import zipfile

    with zipfile.ZipFile(wheels[0]) as wheel:
        clips = sorted(n for n in wheel.namelist() if "eval_video" in n and n.endswith(".mp4"))
        if not clips:
            pytest.skip(f"{wheels[0].name} holds no eval_video clips")
        target = tmp_path_factory.mktemp("real") / "clip.mp4"
        target.write_bytes(wheel.read(clips[0]))
    return target


def test_real_gameplay_clip_converts_through_the_custom_path(tmp_path, real_gameplay_clip):
    episode = tmp_path / "in" / "episode_real"
    episode.mkdir(parents=True)
    (episode / "video.mp4").write_bytes(real_gameplay_clip.read_bytes())
    source = list(read_video_frames(episode / "video.mp4"))
    assert source[0].shape == (360, 640, 3)
    n = min(len(source), 200)
    rng = np.random.default_rng(1)
    lines = [{"forward": 1, "attack": int(rng.random() < 0.3), "camera": [float(rng.normal(0, 2)), float(rng.normal(0, 2))]}
             for _ in range(len(source))]
    (episode / "actions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    code = convert_custom_data.main(["--input_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"),
                                     "--demo_random_mineclip", "--min_timesteps", "16", "--device", "cpu"])
    assert code == 0
    result = validate_episode(tmp_path / "out" / "episode_real")
    assert result.ok, result.errors
    converted = load_episode(tmp_path / "out" / "episode_real")
    got = converted.read_frames(0, n)
    expected = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_LINEAR) for f in source[:n]])
    if abs(converted.metadata["source"]["source_fps"] - 20) < 1e-3:
        assert np.abs(got.astype(int) - expected.astype(int)).mean() < 4.0
    assert got.std() > 10  # real, varied gameplay, not a blank frame
