"""Step 1 end to end on generated recordings: local HTTP index, resumed downloads, recorder quirks, frame rates,
resolutions, kills, the directory lock, parallel jobs, custom data and the entrypoint of 1_generate_dataset.sh.
(Malformed inputs, one by one: tests/test_step1_hostile_inputs.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from data.episode import FRAMES_FILE, load_episode, validate_episode
from data.generation import convert_custom_data, convert_from_contractor, generate_dataset
from data.generation.contractor_actions import load_actions_file
from data.generation.contractor_index import ContractorIndex, IndexFileError, load_index, recordings
from data.generation.episode_conversion import align_to_video
from data.generation.labelling import keep_mask, label_camera
from data.generation.synthetic_contractor import write_synthetic_recording
from data.video_io import VideoWriter, read_video_frames
from episode_factory import frame_indices
from local_http import serve
from recording_factory import contractor_line, jsonl_bytes, write_index_video
from toolkit_utils import cli
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
        "--download_workers", "2", "--retries", "3", "--jobs", "1", *extra,
    ])


def _custom(input_dir: Path, output_dir: Path, *extra: str) -> int:
    return convert_custom_data.main(["--input_dir", str(input_dir), "--output_dir", str(output_dir),
                                     "--demo_random_mineclip", "--min_timesteps", "16", "--device", "cpu", "--jobs", "1",
                                     *extra])


def _local_index(tmp_path: Path, basedir: Path | str, relpaths: list[str]) -> Path:
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"basedir": str(basedir), "relpaths": relpaths}))
    return index


@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
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
    index = _local_index(tmp_path, recordings_dir, ["rec0"])
    assert _convert(tmp_path, str(index)) == 0
    episode = load_episode(tmp_path / "out" / "rec0")
    actions = load_actions_file(recordings_dir / "rec0.jsonl")
    camera = label_camera(actions.env_camera, "truncated")  # the defaults: the original's rules
    keep = keep_mask(actions.env_buttons, camera, actions.env_null, "env")
    assert episode.num_frames == keep.sum() < FRAMES  # null frames were dropped
    np.testing.assert_array_equal(episode.env_buttons, actions.env_buttons[keep])
    np.testing.assert_array_equal(episode.env_camera, camera[keep])
    assert np.all(episode.env_camera == np.trunc(episode.env_camera))  # whole degrees
    joint_b, joint_c = env_arrays_to_joint(actions.env_buttons[keep], camera[keep])
    np.testing.assert_array_equal(episode.agent_buttons, joint_b)
    np.testing.assert_array_equal(episode.agent_camera, joint_c)
    source = [f for f, k in zip(read_video_frames(recordings_dir / "rec0.mp4"), keep) if k]
    gui = actions.gui_open[keep]
    expected = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_LINEAR) for f in source])
    got = episode.read_frames(0, episode.num_frames)
    assert np.abs(got[~gui].astype(int) - expected[~gui].astype(int)).mean() < 3.0  # h264 at CRF 12
    assert np.isnan(episode.embeds[:15]).all() and np.isfinite(episode.embeds[15:]).all()
    assert episode.metadata["source"]["mineclip"]["demo_random_weights"] is True
    conversion = episode.metadata["conversion"]  # the keys step 2 reads to refuse mixing rules
    assert conversion["camera_labels"] == "truncated" and conversion["null_filter"] == "env"
    assert conversion["source_fps"] == 20 and conversion["actions_format"] == "contractor"
    assert (recordings_dir / "rec0.mp4").exists()  # local sources are read in place, never deleted


def test_vpt_paper_labels_are_an_option_recorded_in_the_metadata(tmp_path, recordings_dir):
    index = _local_index(tmp_path, recordings_dir, ["rec0"])
    assert _convert(tmp_path, str(index), "--camera_labels", "float", "--null_filter", "agent") == 0
    episode = load_episode(tmp_path / "out" / "rec0")
    actions = load_actions_file(recordings_dir / "rec0.jsonl")
    camera = label_camera(actions.env_camera, "float")
    keep = keep_mask(actions.env_buttons, camera, actions.env_null, "agent")
    np.testing.assert_array_equal(episode.env_camera, camera[keep])
    assert episode.metadata["conversion"]["camera_labels"] == "float"
    assert episode.metadata["conversion"]["null_filter"] == "agent"


def test_relpath_safety_for_local_and_remote_bases(tmp_path):
    found, refused = recordings(ContractorIndex("x", "https://host.example/base", ["a/b", "a/../../c", "//other.host/x"]))
    assert [r.video for r in found] == ["https://host.example/base/a/b.mp4"]
    assert len(refused) == 2
    (tmp_path / "inside").mkdir()
    found, refused = recordings(ContractorIndex("x", str(tmp_path / "inside"), ["ok", "../outside"]))
    assert [r.name for r in found] == ["ok"] and "outside" in refused[0]
    with pytest.raises(IndexFileError, match="neither a known version"):
        load_index(str(tmp_path / "missing.json"), tmp_path)


def test_relative_basedir_is_relative_to_the_index_file(tmp_path, recordings_dir, monkeypatch):
    indexes = tmp_path / "indexes"
    indexes.mkdir()
    (indexes / "index.json").write_text(json.dumps({"basedir": os.path.relpath(recordings_dir, indexes),
                                                    "relpaths": ["rec1"]}))
    monkeypatch.chdir(tmp_path)  # not the index's folder: a basedir resolved against the cwd would miss
    index = load_index(str(indexes / "index.json"), tmp_path / "cache")
    assert Path(index.basedir).resolve() == recordings_dir.resolve()
    assert [r.video for r in recordings(index)[0]] == [str(recordings_dir.resolve() / "rec1.mp4")]
    url_index = ContractorIndex("https://h.example/snapshots/all.json", "", [])
    from data.generation.contractor_index import resolve_basedir
    assert resolve_basedir("data/", url_index.location) == "https://h.example/snapshots/data/"


def test_too_short_recordings_are_skipped_once_and_remembered(tmp_path, recordings_dir, capsys):
    index = _local_index(tmp_path, recordings_dir, ["rec1"])
    assert _convert(tmp_path, str(index), "--min_timesteps", "100000") == 0
    assert "SKIP rec1" in capsys.readouterr().out
    assert (tmp_path / "out" / ".skipped" / "rec1.json").exists()
    assert _convert(tmp_path, str(index), "--min_timesteps", "100000") == 0
    assert "0 to convert" in capsys.readouterr().out
    assert _convert(tmp_path, str(index), "--min_timesteps", "100000", "--retry_skipped") == 0
    out = capsys.readouterr().out
    assert "1 to convert" in out and "SKIP rec1" in out
    # Another minimum can make it long enough: the marker of other settings does not count, no --retry_skipped needed.
    assert _convert(tmp_path, str(index)) == 0
    assert "1 to convert" in capsys.readouterr().out
    assert validate_episode(tmp_path / "out" / "rec1").ok


def _conversion_command(tmp_path: Path, index: Path, out: Path, jobs: int) -> list[str]:
    """convert_from_contractor.py on a local index with the demo MineCLIP on the CPU, as a subprocess command."""
    return [sys.executable, str(REPO_ROOT / "data/generation/convert_from_contractor.py"), "--index", str(index),
            "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache"), "--num_episodes", "-1",
            "--demo_random_mineclip", "--min_timesteps", "20", "--device", "cpu", "--mineclip_batch_size", "1",
            "--jobs", str(jobs)]


@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
def test_sigkill_mid_conversion_a_second_conversion_is_refused_and_a_rerun_cleans_up(tmp_path, recordings_dir, capsys):
    index = _local_index(tmp_path, recordings_dir, ["rec2"])
    out = tmp_path / "out"
    cmd = _conversion_command(tmp_path, index, out, jobs=1)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and not any(out.glob(".rec2.tmp-*/frames.mp4")):
        time.sleep(0.01)
    assert any(out.glob(".rec2.tmp-*")), "the conversion never started writing"
    # A second conversion into the same directory while the first runs: refused in one line, status 2.
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        cli.run_main("convert_from_contractor.py", lambda: _convert(tmp_path, str(index)))
    captured = capsys.readouterr()
    assert refused.value.code == 2 and captured.out == ""
    assert captured.err == (f"convert_from_contractor.py: --output_dir {out}: another step 1 conversion "
                            f"(pid {proc.pid}) is writing into it; wait until it finishes, or choose another directory\n")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "rec2").exists()
    leftovers = list(out.glob(".rec2.tmp-*"))
    assert leftovers and not validate_episode(leftovers[0]).ok
    with pytest.raises(Exception):
        load_episode(leftovers[0])
    capsys.readouterr()
    assert _convert(tmp_path, str(index)) == 0  # a re-run removes the dead writer's directory and converts
    assert f"removed 1 unfinished episode(s) of interrupted conversions ({leftovers[0].name})" in capsys.readouterr().out
    assert not leftovers[0].exists() and validate_episode(out / "rec2").ok


def _descendants(pid: int) -> list[int]:
    """Process ids started (directly or not) by `pid` that still run (zombies count as ended)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return [c.pid for c in psutil.Process(pid).children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _running(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


@pytest.mark.slow  # two spawned processes import torch and build MineCLIP
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_sigkill_of_the_parent_ends_its_conversion_processes(tmp_path, recordings_dir):
    """kill -9 of a --jobs 2 conversion: its pool processes end within seconds instead of writing on unlocked."""
    index = _local_index(tmp_path, recordings_dir, ["rec0", "rec1"])
    out = tmp_path / "out"
    cmd = _conversion_command(tmp_path, index, out, jobs=2)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (any(out.glob(".rec0.tmp-*/frames.mp4"))
                                              and any(out.glob(".rec1.tmp-*/frames.mp4"))):
            time.sleep(0.05)
        workers = _descendants(proc.pid)
        assert any(out.glob(".rec0.tmp-*")) and any(out.glob(".rec1.tmp-*")) and workers, "the workers never started writing"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and _running(workers):
        time.sleep(0.05)
    assert _running(workers) == [], "conversion processes outlived their parent"
    # Killed mid-episode: no episode was finished by an orphan; the next run removes the leftovers.
    assert not (out / "rec0").exists() and not (out / "rec1").exists()


def test_leftovers_of_live_writers_are_kept(tmp_path, recordings_dir, capsys):
    out = tmp_path / "out"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = out / f".other.tmp-{sleeper.pid}-0123abcd"
        dead = out / ".gone.tmp-999999999-0123abcd"
        live.mkdir(parents=True)
        dead.mkdir()
        assert _convert(tmp_path, str(_local_index(tmp_path, recordings_dir, ["rec1"]))) == 0
        assert live.exists() and not dead.exists()
        assert f"{live.name} belongs to a process that still runs" in capsys.readouterr().out
    finally:
        sleeper.kill()
        sleeper.wait()


def test_recorder_version_quirks_convert_end_to_end_with_frames_aligned(tmp_path):
    """Lines without hotbar, null mouse/keyboard, null lines and mouse button 3 in one recording: every frame
    keeps its own line, null actions are dropped (env rule), and the actions are the recorder's meaning."""
    n = 40
    src = tmp_path / "src"
    write_index_video(src / "quirks.mp4", n)
    lines = []
    for i in range(n):
        if i % 10 == 3:
            lines.append(None)  # a null line: dropped, its frame still read
        elif i % 10 == 5:
            lines.append({**contractor_line(hotbar=None), "mouse": None})  # keys only
        elif i % 10 == 7:
            lines.append({**contractor_line(keys=(), dx=20, hotbar=None), "keyboard": None})  # mouse only: 3 degrees
        elif i % 10 == 9:
            lines.append(contractor_line(keys=(), buttons=[3], hotbar=None))  # button 3: nothing, a null action
        else:
            lines.append(contractor_line(hotbar=None))
    (src / "quirks.jsonl").write_bytes(jsonl_bytes(lines))
    assert _convert(tmp_path, str(_local_index(tmp_path, src, ["quirks"])), "--min_timesteps", "16") == 0
    episode = load_episode(tmp_path / "out" / "quirks")
    kept = [i for i in range(n) if i % 10 not in (3, 9)]
    np.testing.assert_array_equal(frame_indices(episode.read_frames(0, episode.num_frames)), kept)
    names = [{ENV_BUTTONS[j] for j in np.flatnonzero(row)} for row in episode.env_buttons]
    assert names == [set() if i % 10 == 7 else {"forward"} for i in kept]
    np.testing.assert_array_equal(episode.env_camera, [[0, 3] if i % 10 == 7 else [0, 0] for i in kept])


def test_a_30fps_contractor_recording_is_resampled_to_20fps(tmp_path):
    """One jsonl line per frame of a 30 fps video: output frame k shows source frame floor(1.5 k) and carries
    the merged actions of source frames floor(1.5 k) .. floor(1.5 (k + 1)) - 1 (the custom-data rule)."""
    n = 45
    src = tmp_path / "src"
    write_index_video(src / "fast.mp4", n, fps=30)
    lines = [contractor_line(keys=("key.keyboard.w",) if i % 3 != 2 else ("key.keyboard.space",), dx=4) for i in range(n)]
    (src / "fast.jsonl").write_bytes(jsonl_bytes(lines))
    assert _convert(tmp_path, str(_local_index(tmp_path, src, ["fast"])), "--min_timesteps", "16") == 0
    episode = load_episode(tmp_path / "out" / "fast")
    assert episode.num_frames == 30
    np.testing.assert_array_equal(frame_indices(episode.read_frames(0, 30)), np.floor(np.arange(30) * 1.5).astype(int))
    row = dict(zip(ENV_BUTTONS, episode.env_buttons[1]))  # source frames 1 (w) and 2 (space)
    assert row["forward"] == 1 and row["jump"] == 1 and sum(row.values()) == 2
    # 4 px = 0.6 degrees per source frame: one source frame -> trunc(0.6) = 0, two -> trunc(1.2) = 1
    np.testing.assert_array_equal(episode.env_camera[:2], [[0, 0], [0, 1]])
    assert episode.metadata["conversion"]["source_fps"] == pytest.approx(30)


F, J, A, U, S = "forward", "jump", "attack", "use", "sneak"
# fps -> (source actions: (buttons, camera [pitch, yaw])), expected per 20 fps frame: (source frame shown, buttons,
# camera, null)). A slower source repeats frames (each repeat holds the buttons and an equal share of the move); a
# faster one merges them (buttons of any, moves added up); every recorded move is counted once.
RESAMPLING_CASES = {
    "10 fps: each frame shown twice": (10, [({F}, [0, 2]), ({J}, [1, 0]), (set(), [0, 0]), ({A}, [0, -3])], [
        (0, {F}, [0, 1], False), (0, {F}, [0, 1], False), (1, {J}, [0.5, 0], False), (1, {J}, [0.5, 0], False),
        (2, set(), [0, 0], True), (2, set(), [0, 0], True), (3, {A}, [0, -1.5], False), (3, {A}, [0, -1.5], False)]),
    "15 fps: every third frame shown twice": (15, [({F}, [0, 2]), ({J}, [0, 0]), ({A}, [0, 3]), ({U}, [2, 0]),
                                                  ({S}, [0, 0]), ({F}, [0, 1])], [
        (0, {F}, [0, 1], False), (0, {F}, [0, 1], False), (1, {J}, [0, 0], False), (2, {A}, [0, 3], False),
        (3, {U}, [1, 0], False), (3, {U}, [1, 0], False), (4, {S}, [0, 0], False), (5, {F}, [0, 1], False)]),
    "30 fps: frames merged": (30, [({F}, [0, 1]), ({J}, [0, 1]), ({A}, [1, 0]), (set(), [0, 0]), ({U}, [0, 0]),
                                   (set(), [0, 0])], [
        (0, {F}, [0, 1], False), (1, {J, A}, [1, 1], False), (3, set(), [0, 0], True), (4, {U}, [0, 0], False)]),
    "20 fps: unchanged": (20, [({F}, [0, 2]), (set(), [0, 0])], [(0, {F}, [0, 2], False), (1, set(), [0, 0], True)]),
}


@pytest.mark.parametrize("case", list(RESAMPLING_CASES))
def test_resampled_actions_count_every_recorded_move_once(tmp_path, case):
    fps, source, expected = RESAMPLING_CASES[case]
    path = tmp_path / "actions.jsonl"
    path.write_text("".join(json.dumps({**{b: 1 for b in buttons}, "camera": camera}) + "\n" for buttons, camera in source))
    actions, indices = align_to_video(load_actions_file(path), len(source), fps, 0, tmp_path / "video.mp4")
    assert indices.tolist() == [shown for shown, *_ in expected]
    assert [{ENV_BUTTONS[j] for j in np.flatnonzero(row)} for row in actions.env_buttons] == [b for _, b, _, _ in expected]
    np.testing.assert_allclose(actions.env_camera, [c for *_, c, _ in expected])
    assert actions.env_null.tolist() == [null for *_, null in expected]
    np.testing.assert_allclose(actions.env_camera.sum(axis=0), np.sum([c for _, c in source], axis=0))


def test_a_10fps_recording_shows_each_frame_twice_with_its_action(tmp_path):
    """Upsampling end to end, default rules: both repeats of a frame are kept with its keys and half its move."""
    n = 12
    episode = tmp_path / "in" / "episode_slow"
    write_index_video(episode / "video.mp4", n, fps=10)
    lines = [{"forward": 1, "camera": [0.0, 2.0]} if i % 4 != 3 else {} for i in range(n)]  # every 4th frame null
    (episode / "actions.jsonl").write_bytes(jsonl_bytes(lines))
    assert _custom(tmp_path / "in", tmp_path / "out") == 0
    converted = load_episode(tmp_path / "out" / "episode_slow")
    shown = [i for i in range(n) if i % 4 != 3 for _ in range(2)]
    assert converted.num_frames == len(shown) == 18
    np.testing.assert_array_equal(frame_indices(converted.read_frames(0, len(shown))), shown)
    assert converted.env_buttons[:, ENV_BUTTONS.index("forward")].all() and converted.env_buttons.sum() == 18
    np.testing.assert_array_equal(converted.env_camera, [[0, 1]] * 18)  # trunc(2 / 2): the 18 degrees recorded


def _write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    with VideoWriter(path, fps=fps) as writer:
        for frame in frames:
            writer.write(frame)


def _write_lossless(path: Path, frames: np.ndarray, fps: int = 20) -> None:
    """FFV1 in Matroska: decodes to exactly these frames (FFmpeg finds the format from the content)."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "bgr0"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="bgr0")))
        container.mux(stream.encode(None))


def test_custom_recordings_of_any_size_are_brought_to_640x360_first(tmp_path):
    """A 1280x720 source gives the same episode as resizing it to 640x360 (INTER_LINEAR) and converting that."""
    rng = np.random.default_rng(3)
    n = 16
    # Thin moving lines: detail that a direct 1280 -> 128 resize and the 640x360 path render differently
    base = np.full((720, 1280, 3), 60, np.uint8)
    base[:, ::5, 0], base[::7, :, 1], base[::3, ::11, 2] = 255, 200, 250
    frames = np.stack([np.roll(base, 3 * t, axis=1) for t in range(n)])
    lines = [contractor_line(dx=3, gui=i % 4 == 0, x=float(rng.integers(0, 1280)), y=float(rng.integers(0, 720)))
             for i in range(n)]
    big, small = tmp_path / "big" / "episode_a", tmp_path / "small" / "episode_a"
    for folder in (big, small):
        folder.mkdir(parents=True)
        (folder / "actions.jsonl").write_bytes(jsonl_bytes(lines))
    _write_lossless(big / "video.mp4", frames)
    decoded = np.stack(list(read_video_frames(big / "video.mp4")))
    np.testing.assert_array_equal(decoded, frames)
    _write_lossless(small / "video.mp4", np.stack([cv2.resize(f, (640, 360), interpolation=cv2.INTER_LINEAR)
                                                   for f in frames]))
    assert _custom(big.parent, tmp_path / "out_big") == 0
    assert _custom(small.parent, tmp_path / "out_small") == 0
    a, b = load_episode(tmp_path / "out_big" / "episode_a"), load_episode(tmp_path / "out_small" / "episode_a")
    assert a.metadata["conversion"]["source_size"] == [720, 1280]
    np.testing.assert_array_equal(a.read_frames(0, n), b.read_frames(0, n))
    np.testing.assert_array_equal(a.embeds, b.embeds)
    assert (tmp_path / "out_big/episode_a" / FRAMES_FILE).read_bytes() == (tmp_path / "out_small/episode_a" / FRAMES_FILE).read_bytes()
    direct = cv2.resize(frames[1], (128, 128), interpolation=cv2.INTER_LINEAR)  # the old path: straight to 128x128
    via = cv2.resize(cv2.resize(frames[1], (640, 360), interpolation=cv2.INTER_LINEAR), (128, 128), interpolation=cv2.INTER_LINEAR)
    assert not np.array_equal(direct, via)  # so the test above can tell the two paths apart


def test_custom_recordings_resample_to_20fps_and_merge_actions(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (90, 72, 96, 3), dtype=np.uint8)  # 3 s at 30 fps, an odd resolution
    episode = tmp_path / "in" / "episode_001"
    episode.mkdir(parents=True)
    _write_video(episode / "video.mp4", frames, fps=30)
    lines = [{"forward": 1, "camera": [0.0, 1.0]} if i % 3 != 2 else {"jump": 1, "camera": [0.5, 0.0]} for i in range(90)]
    (episode / "actions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert _custom(tmp_path / "in", tmp_path / "out") == 0
    converted = load_episode(tmp_path / "out" / "episode_001")
    assert converted.num_frames == 60  # 90 frames at 30 fps -> 60 at 20 fps
    assert converted.metadata["conversion"]["source_fps"] == pytest.approx(30)
    # output frame k covers source frames floor(1.5 k) .. floor(1.5 (k + 1)) - 1: their actions are merged
    k = 1  # source frames 1, 2 -> forward (frame 1) and jump (frame 2), camera summed [0.5, 1.0], then truncated
    row = dict(zip(ENV_BUTTONS, converted.env_buttons[k]))
    assert row["forward"] == 1 and row["jump"] == 1 and sum(row.values()) == 2
    np.testing.assert_array_equal(converted.env_camera[k], [0.0, 1.0])


@pytest.mark.slow  # two spawned processes import torch and build MineCLIP
def test_parallel_jobs_write_the_same_episodes_as_one_job(tmp_path, recordings_dir):
    index = _local_index(tmp_path, recordings_dir, ["rec0", "rec1"])
    assert _convert(tmp_path, str(index), "--jobs", "2", "--output_dir", str(tmp_path / "two")) == 0
    assert _convert(tmp_path, str(index)) == 0
    for name in ("rec0", "rec1"):
        for file in ("frames.mp4", "actions.npz", "mineclip_embeds.npy"):
            assert (tmp_path / "two" / name / file).read_bytes() == (tmp_path / "out" / name / file).read_bytes()


def _generate(tmp_path: Path, *extra: str) -> int:
    return cli.run_main("1_generate_dataset.sh", lambda: generate_dataset.main([
        "--output_dir", str(tmp_path / "contractor"), "--cache_dir", str(tmp_path / "cache"),
        "--custom_output_dir", str(tmp_path / "custom"), "--demo_random_mineclip", "--device", "cpu", "--jobs", "1",
        "--min_timesteps", "16", "--num_episodes", "-1", *extra]))


def test_custom_only_run_touches_no_network_and_validates_what_it_wrote(tmp_path, monkeypatch, capsys):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("a custom-only run opened a URL")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    _tiny_recording(tmp_path / "in" / "episode_a" / "video.mp4", tmp_path / "in" / "episode_a" / "actions.jsonl")
    assert _generate(tmp_path, "--indexes", "", "--custom_input_dir", str(tmp_path / "in")) == 0
    out = capsys.readouterr().out
    assert f"Checked {tmp_path / 'custom'}: 1 of 1 episodes valid" in out
    assert not (tmp_path / "contractor").exists() and not (tmp_path / "cache").exists()
    # The closing validation covers the custom dataset: a damaged episode there makes the run fail.
    (tmp_path / "custom" / "episode_a" / "mineclip_embeds.npy").write_bytes(b"damaged")
    assert _generate(tmp_path, "--indexes", "", "--custom_input_dir", str(tmp_path / "in")) == 1
    out = capsys.readouterr().out
    assert f"FAIL {tmp_path / 'custom' / 'episode_a'}: mineclip_embeds.npy: unreadable" in out
    assert out.rstrip().endswith("Done: 0 converted (0 frames), 0 skipped, 0 failed; 1 episode(s) failed validation")


def _tiny_recording(video: Path, actions: Path, n: int = 20) -> None:
    write_index_video(video, n)
    actions.write_bytes(jsonl_bytes([contractor_line() for _ in range(n)]))


@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
def test_the_script_runs_every_index_then_custom_data(tmp_path):
    """1_generate_dataset.sh as the guide runs it: two indexes and custom data, one summary, exit 0."""
    src = tmp_path / "src"
    for name in ("rec1", "rec2"):
        _tiny_recording(src / f"{name}.mp4", src / f"{name}.jsonl")
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.json").write_text(json.dumps({"basedir": "../src", "relpaths": ["rec2"]}))
    _tiny_recording(tmp_path / "in" / "episode_a" / "video.mp4", tmp_path / "in" / "episode_a" / "actions.jsonl")
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHON", "BATCH_SIZE")},
           "INDEXES": f"{_local_index(tmp_path, src, ['rec1'])} {other / 'index.json'}",
           "N_EPISODES_CONTRACTOR": "-1", "OUTPUT_DIR": str(tmp_path / "contractor"), "CACHE_DIR": str(tmp_path / "cache"),
           "DEMO_RANDOM_MINECLIP": "1", "MIN_TIMESTEPS": "16", "JOBS": "1", "CUSTOM_INPUT_DIR": str(tmp_path / "in"),
           "CUSTOM_OUTPUT_DIR": str(tmp_path / "custom"), "PYTHON": sys.executable}
    result = subprocess.run(["bash", "1_generate_dataset.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "contractor").iterdir() if not p.name.startswith(".")) == ["rec1", "rec2"]
    assert (tmp_path / "custom" / "episode_a").is_dir()
    lines = result.stdout.splitlines()
    assert f"Checked {tmp_path / 'contractor'}: 2 of 2 episodes valid" in lines
    assert f"Checked {tmp_path / 'custom'}: 1 of 1 episodes valid" in lines
    assert lines[-1].startswith("Done: 3 converted (")


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


@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
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
    assert _custom(tmp_path / "in", tmp_path / "out") == 0
    result = validate_episode(tmp_path / "out" / "episode_real")
    assert result.ok, result.errors
    converted = load_episode(tmp_path / "out" / "episode_real")
    got = converted.read_frames(0, n)
    expected = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_LINEAR) for f in source[:n]])
    if abs(converted.metadata["conversion"]["source_fps"] - 20) < 0.5:
        assert np.abs(got.astype(int) - expected.astype(int)).mean() < 4.0
    assert got.std() > 10  # real, varied gameplay, not a blank frame
