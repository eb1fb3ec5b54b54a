"""Episode format and video I/O: round trips, random access, validation, crash safety, legacy layout, CLI."""

import gc
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.episode import (
    ACTIONS_FILE,
    EMBED_DIM,
    EMBED_START,
    EMBEDS_FILE,
    FORMAT_NAME,
    FRAME_SIZE,
    FRAMES_FILE,
    METADATA_FILE,
    EpisodeFormatError,
    EpisodeWriter,
    load_episode,
    validate_episode,
)
from data.video_io import DEFAULT_GOP, VideoError, VideoReader, VideoWriter, read_video_frames, verify_video
from episode_factory import moving_frames, random_actions, write_legacy_episode
from vpt_model.action_space import ENV_BUTTONS, env_actions_to_arrays, env_arrays_to_joint

REPO_ROOT = Path(__file__).resolve().parents[1]
N_FRAMES = 60  # three keyframe intervals
# Measured on moving_frames() at the default CRF 12: mean abs error 3.3, worst frame 4.3 (the sharp
# colour edges of the pattern cost chroma precision under yuv420p); see BENCHMARKS.md.
MAX_FRAME_MAE = 5.0
LEGACY_MAX_FRAME_MAE = 8.0  # mp4v at OpenCV's default quality is coarser


def random_embeds(n: int, seed: int = 0) -> np.ndarray:
    """float32 [n, 512]: NaN rows before EMBED_START, random rows after."""
    embeds = np.random.default_rng(seed).normal(size=(n, EMBED_DIM)).astype(np.float32)
    embeds[:EMBED_START] = np.nan
    return embeds


def write_episode(path: Path, n: int = N_FRAMES, seed: int = 0, **writer_kwargs) -> dict:
    """Write a generated episode with EpisodeWriter; return what was written."""
    frames = moving_frames(n, seed)
    buttons, camera = random_actions(n, seed)
    embeds = random_embeds(n, seed)
    with EpisodeWriter(path, source={"kind": "test", "seed": seed}, **writer_kwargs) as writer:
        for i, frame in enumerate(frames):
            writer.append_frame(frame)
            if i % 2:  # both ways of giving actions
                writer.append_actions(buttons[i:i + 1], camera[i:i + 1])
            else:
                action = {name: int(buttons[i, j]) for j, name in enumerate(ENV_BUTTONS)}
                action["camera"] = camera[i]
                writer.append_action(action)
        writer.set_embeds(embeds)
    return {"frames": frames, "buttons": buttons, "camera": camera, "embeds": embeds}


@pytest.fixture(scope="module")
def good_episode(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("dataset") / "episode_000"
    return path, write_episode(path)


@pytest.fixture
def episode_copy(good_episode, tmp_path) -> Path:
    """A private copy of the good episode that a test may damage."""
    return Path(shutil.copytree(good_episode[0], tmp_path / "episode_copy"))


def single_line(message: str) -> bool:
    return "\n" not in message.strip()


# ---------------------------------------------------------------------------------------------
# Round trip and random access


def test_round_trip(good_episode):
    path, written = good_episode
    episode = load_episode(path)
    assert episode.layout == "toolkit" and episode.num_frames == N_FRAMES
    frames = episode.read_frames(0, N_FRAMES)
    assert frames.shape == (N_FRAMES, FRAME_SIZE, FRAME_SIZE, 3) and frames.dtype == np.uint8
    errors = np.abs(frames.astype(np.int16) - written["frames"]).reshape(N_FRAMES, -1).mean(axis=1)
    assert errors.max() < MAX_FRAME_MAE
    # Each decoded frame is far closer to its own source than to the next one (no off-by-one).
    shifted = np.abs(frames[:-1].astype(np.int16) - written["frames"][1:]).reshape(N_FRAMES - 1, -1).mean(axis=1)
    assert np.all(shifted > 3 * errors[:-1])

    np.testing.assert_array_equal(episode.env_buttons, written["buttons"])
    np.testing.assert_array_equal(episode.env_camera, written["camera"])
    joint_buttons, joint_camera = env_arrays_to_joint(written["buttons"], written["camera"])
    np.testing.assert_array_equal(episode.agent_buttons, joint_buttons)
    np.testing.assert_array_equal(episode.agent_camera, joint_camera)
    assert episode.env_buttons.dtype == np.uint8 and episode.env_camera.dtype == np.float32
    assert episode.agent_buttons.dtype == np.int16 and episode.agent_camera.dtype == np.int16
    np.testing.assert_array_equal(episode.embeds, written["embeds"])  # NaN == NaN here
    assert isinstance(episode.embeds, np.memmap)

    metadata = episode.metadata
    assert metadata["format"] == FORMAT_NAME and metadata["format_version"] == 1
    assert metadata["num_frames"] == N_FRAMES and metadata["fps"] == 20
    assert metadata["frame_size"] == [128, 128] and metadata["embed_start"] == EMBED_START
    assert metadata["source"] == {"kind": "test", "seed": 0}
    assert {"created", "versions", "conversion", "files"} <= set(metadata)
    assert sorted(os.listdir(path)) == sorted([FRAMES_FILE, ACTIONS_FILE, EMBEDS_FILE, METADATA_FILE])
    episode.close()


def test_read_range_equals_full_decode(good_episode):
    path, _ = good_episode
    full = np.stack(list(read_video_frames(path / FRAMES_FILE)))
    assert full.shape[0] == N_FRAMES
    rng = np.random.default_rng(1)
    ranges = [(0, N_FRAMES), (0, 1), (N_FRAMES - 1, N_FRAMES), (DEFAULT_GOP - 1, DEFAULT_GOP + 1), (7, 7)]
    ranges += [tuple(sorted(rng.integers(0, N_FRAMES + 1, 2).tolist())) for _ in range(20)]
    with VideoReader(path / FRAMES_FILE) as reader:
        assert reader.num_frames == N_FRAMES and reader.fps == 20
        for start, stop in ranges:
            np.testing.assert_array_equal(reader.read_range(start, stop), full[start:stop], err_msg=f"{start}:{stop}")
        # Consecutive windows (no seek in between) and a jump backwards.
        np.testing.assert_array_equal(reader.read_range(10, 25), full[10:25])
        np.testing.assert_array_equal(reader.read_range(25, 41), full[25:41])
        np.testing.assert_array_equal(reader.read_range(3, 5), full[3:5])
        with pytest.raises(ValueError, match="outside"):
            reader.read_range(10, N_FRAMES + 1)
    with load_episode(path) as episode:
        np.testing.assert_array_equal(episode.read_frames(33, 50), full[33:50])


def test_h264_file_properties(good_episode):
    import av

    with av.open(str(good_episode[0] / FRAMES_FILE)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        keyframes = [i for i, packet in enumerate(container.demux(stream)) if packet.is_keyframe]
    assert keyframes == list(range(0, N_FRAMES, DEFAULT_GOP))
    boxes = top_level_boxes(good_episode[0] / FRAMES_FILE)
    assert boxes.index("moov") < boxes.index("mdat"), boxes


def top_level_boxes(path: Path) -> list[str]:
    """Types of the top-level MP4 boxes in file order (faststart puts moov before mdat)."""
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        boxes.append(data[offset + 4:offset + 8].decode("latin-1"))
        if size == 1:  # 64-bit size follows the type
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        if size < 8:
            break
        offset += size
    return boxes


def test_video_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(VideoError, match="missing.mp4: video file does not exist"):
        VideoReader(missing)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(VideoError, match="garbage.mp4") as caught:
        list(read_video_frames(garbage))
    assert single_line(str(caught.value))

    frames = moving_frames(45)
    good = tmp_path / "good.mp4"
    with VideoWriter(good) as writer:
        for frame in frames:
            writer.write(frame)
    truncated = tmp_path / "truncated.mp4"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated.mp4: .*truncated") as caught:
        with VideoReader(truncated) as reader:
            reader.read_range(30, 45)
    assert single_line(str(caught.value))
    with pytest.raises(VideoError, match="truncated"):
        list(read_video_frames(truncated))
    with pytest.raises(VideoError, match="truncated"):
        verify_video(truncated)
    assert verify_video(good) == (45, FRAME_SIZE, FRAME_SIZE)


def test_video_writer_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(tmp_path / "a.mp4") as writer:
            writer.write(np.zeros((64, 64, 3), dtype=np.float32))
    assert not (tmp_path / "a.mp4").exists()  # an aborted writer leaves no file
    with pytest.raises(ValueError, match="earlier frames"):
        with VideoWriter(tmp_path / "b.mp4") as writer:
            writer.write(np.zeros((64, 64, 3), dtype=np.uint8))
            writer.write(np.zeros((64, 32, 3), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------
# Validation


def test_validate_passes_on_good_episode(good_episode):
    result = validate_episode(good_episode[0])
    assert result.ok, result.errors
    assert result.num_frames == N_FRAMES and result.line().startswith("OK   ")
    assert validate_episode(good_episode[0], decode_frames=False).ok


def _rewrite_actions(path: Path, **replace) -> None:
    with np.load(path / ACTIONS_FILE) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays.update(replace)
    np.savez(path / ACTIONS_FILE, **arrays)


def _edit_embeds(path: Path, edit) -> None:
    embeds = np.load(path / EMBEDS_FILE)
    np.save(path / EMBEDS_FILE, edit(embeds))


def _edit_metadata(path: Path, **fields) -> None:
    metadata = json.loads((path / METADATA_FILE).read_text())
    metadata.update(fields)
    (path / METADATA_FILE).write_text(json.dumps(metadata))


def _garble(path: Path, offset_fraction: float, n: int) -> None:
    data = bytearray(path.read_bytes())
    offset = int(len(data) * offset_fraction)
    data[offset:offset + n] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _set_embed_row(row: int, value: float):
    def edit(embeds: np.ndarray) -> np.ndarray:
        embeds[row] = value
        return embeds
    return edit


DAMAGES = {
    "missing actions": (lambda p: (p / ACTIONS_FILE).unlink(), [r"missing actions\.npz"]),
    "missing metadata": (lambda p: (p / METADATA_FILE).unlink(), [r"missing metadata\.json"]),
    "missing video": (lambda p: (p / FRAMES_FILE).unlink(), [r"missing frames\.mp4"]),
    "metadata count": (
        lambda p: _edit_metadata(p, num_frames=N_FRAMES + 1),
        [rf"frame-count mismatch: metadata num_frames {N_FRAMES + 1}, actions\.npz {N_FRAMES}"],
    ),
    "embeds count": (
        lambda p: _edit_embeds(p, lambda e: e[:-3]),
        [rf"frame-count mismatch: .*mineclip_embeds\.npy {N_FRAMES - 3}", r"mineclip_embeds\.npy: \d+ bytes, metadata\.json recorded \d+"],
    ),
    "actions count": (
        lambda p: _rewrite_actions(p, **{k: v[:-1] for k, v in np.load(p / ACTIONS_FILE).items()}),
        [rf"frame-count mismatch: .*actions\.npz {N_FRAMES - 1}"],
    ),
    "NaN after frame 15": (
        lambda p: _edit_embeds(p, _set_embed_row(20, np.nan)),
        [r"1 row\(s\) from frame 15 on are not finite .*first at frame 20"],
    ),
    "zero embedding": (lambda p: _edit_embeds(p, _set_embed_row(33, 0.0)), [r"all-zero row\(s\), first at frame 33"]),
    "value before frame 15": (
        lambda p: _edit_embeds(p, _set_embed_row(3, 1.0)),
        [r"row 3 holds values; rows 0\.\.14 must be NaN"],
    ),
    "embeds shape": (lambda p: _edit_embeds(p, lambda e: e[:, :256]), [r"mineclip_embeds\.npy: shape \[60, 256\]"]),
    "truncated mp4": (lambda p: _truncate(p / FRAMES_FILE, 0.6), [r"frames\.mp4: .*truncated", r"frames\.mp4: \d+ bytes"]),
    "garbled mp4 data": (
        lambda p: _garble(p / FRAMES_FILE, 0.5, 300),
        [r"frames\.mp4: sha256 differs from metadata\.json"],
    ),
    "garbled mp4 header": (lambda p: _garble(p / FRAMES_FILE, 0.0, 400), [r"frames\.mp4: (not a readable video|no video)"]),
    "env_buttons shape": (
        lambda p: _rewrite_actions(p, env_buttons=np.zeros((N_FRAMES, 20), np.uint8)),
        [rf"env_buttons has shape \[{N_FRAMES}, 20\], expected \[{N_FRAMES}, 23\]"],
    ),
    "agent_buttons dtype": (
        lambda p: _rewrite_actions(p, agent_buttons=np.zeros(N_FRAMES, np.int64)),
        [r"agent_buttons has dtype int64, expected int16"],
    ),
    "joint disagrees": (
        lambda p: _rewrite_actions(p, agent_buttons=(np.load(p / ACTIONS_FILE)["agent_buttons"] + 1) % 8641),
        [r"agent_buttons/agent_camera disagree with env_buttons/env_camera at 60 frame\(s\), first 0"],
    ),
    "joint out of range": (
        lambda p: _rewrite_actions(p, agent_camera=np.full(N_FRAMES, 121, np.int16)),
        [r"agent_camera outside 0\.\.120"],
    ),
    "button value 2": (
        lambda p: _rewrite_actions(p, env_buttons=np.full((N_FRAMES, 23), 2, np.uint8)),
        [r"env_buttons has values other than 0/1"],
    ),
    "camera inf": (
        lambda p: _rewrite_actions(p, env_camera=np.full((N_FRAMES, 2), np.inf, np.float32)),
        [r"env_camera is not finite at frame 0"],
    ),
    "metadata not json": (lambda p: (p / METADATA_FILE).write_text("{oops"), [r"metadata\.json: unreadable JSON"]),
    "metadata field": (lambda p: _edit_metadata(p, fps=30), [r"metadata\.json: fps is 30, expected 20"]),
    "format version": (lambda p: _edit_metadata(p, format_version=2), [r"format_version 2; this toolkit reads version 1"]),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_validate_reports_damage(episode_copy, damage):
    apply, expected = DAMAGES[damage]
    apply(episode_copy)
    result = validate_episode(episode_copy)
    assert not result.ok
    for pattern in expected:
        assert any(re.search(pattern, error) for error in result.errors), (pattern, result.errors)
    assert result.line().startswith(f"FAIL {episode_copy}: ") and single_line(result.line())


def test_load_episode_rejects_inconsistent_counts(episode_copy):
    _edit_embeds(episode_copy, lambda e: e[:-1])
    with pytest.raises(EpisodeFormatError, match="frame-count mismatch"):
        load_episode(episode_copy)


def test_verify_video_reports_decoder_errors(episode_copy):
    # Not every garbled byte upsets an h264 decoder (it conceals what it can); damage in ten places
    # surely does, and verify_video must then fail instead of returning concealed frames.
    video = episode_copy / FRAMES_FILE
    for fraction in np.linspace(0.1, 0.9, 10):
        _garble(video, float(fraction), 200)
    with pytest.raises(VideoError, match=r"frames\.mp4: corrupt") as caught:
        verify_video(video)
    assert single_line(str(caught.value))
    # The threaded training-path reader must not hang on such a file either.
    try:
        with VideoReader(video) as reader:
            reader.read_range(0, N_FRAMES)
    except VideoError as error:
        assert "frames.mp4" in str(error)


def test_validate_no_decode_still_catches_garbling(episode_copy):
    _garble(episode_copy / FRAMES_FILE, 0.5, 300)
    result = validate_episode(episode_copy, decode_frames=False)
    assert not result.ok and any("sha256 differs" in error for error in result.errors)


# ---------------------------------------------------------------------------------------------
# Crash safety


def test_exception_inside_writer_leaves_nothing(tmp_path):
    final = tmp_path / "episode"
    with pytest.raises(RuntimeError, match="boom"):
        with EpisodeWriter(final) as writer:
            for frame in moving_frames(20):
                writer.append_frame(frame)
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_incomplete_writer_close_fails_and_leaves_nothing(tmp_path):
    final = tmp_path / "episode"
    with pytest.raises(ValueError, match="frame-count mismatch"):
        with EpisodeWriter(final) as writer:
            for frame in moving_frames(20):
                writer.append_frame(frame)
            writer.append_actions(*random_actions(19))
            writer.set_embeds(random_embeds(20))
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="rows 0..14 must be NaN"):
        with EpisodeWriter(final) as writer:
            writer.set_embeds(np.ones((20, EMBED_DIM), np.float32))
    assert os.listdir(tmp_path) == []


def test_writer_dropped_without_close_removes_its_temp_dir(tmp_path):
    writer = EpisodeWriter(tmp_path / "episode")
    writer.append_frame(moving_frames(1)[0])
    assert len(os.listdir(tmp_path)) == 1
    del writer
    assert os.listdir(tmp_path) == []


def test_writer_refuses_to_overwrite_unless_asked(tmp_path):
    final = tmp_path / "episode"
    write_episode(final, n=20, seed=1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        EpisodeWriter(final)
    write_episode(final, n=25, seed=2, overwrite=True)
    assert load_episode(final).num_frames == 25
    assert os.listdir(tmp_path) == ["episode"]  # the old copy and the temp dir are gone


def test_sigkill_mid_write_leaves_nothing_loadable(tmp_path):
    dataset = tmp_path / "dataset"
    final = dataset / "episode"
    child = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tests" / "episode_writer_child.py"), str(final)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "writing", child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    assert not final.exists()
    leftovers = list(dataset.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".episode.tmp-")
    leftover = leftovers[0]
    assert (leftover / FRAMES_FILE).stat().st_size > 0  # it really was killed mid-write
    result = validate_episode(leftover)
    assert not result.ok and "unfinished temporary directory" in result.errors[0]
    with pytest.raises(EpisodeFormatError, match="unfinished temporary directory"):
        load_episode(leftover)
    with pytest.raises(FileNotFoundError):
        load_episode(final)
    # Even renamed to look like an episode, what the killed writer left is rejected.
    renamed = Path(shutil.copytree(leftover, tmp_path / "renamed"))
    assert not validate_episode(renamed).ok
    with pytest.raises(EpisodeFormatError):
        load_episode(renamed)
    with pytest.raises(VideoError):
        VideoReader(renamed / FRAMES_FILE).read_range(0, 1)  # no moov index: never playable
    cli = run_cli("--validate", str(dataset))
    assert cli.returncode == 1 and cli.stdout.startswith(f"FAIL {leftover}: unfinished temporary directory")


# ---------------------------------------------------------------------------------------------
# The original STEVE-1 layout


def test_legacy_layout_loads_only_when_trusted(tmp_path):
    path = tmp_path / "contractor_6_13_json_3_contractor_nmFrm40_term"
    written = write_legacy_episode(path)
    with pytest.raises(EpisodeFormatError, match="original STEVE-1 pickle layout.*trust_legacy_pickle"):
        load_episode(path)
    result = validate_episode(path)
    assert not result.ok and "--trust_legacy_pickle" in result.errors[0]

    with load_episode(path, trust_legacy_pickle=True) as episode:
        assert episode.layout == "legacy" and episode.num_frames == 40
        assert episode.metadata == {"contractor_version": "6.13", "contractor_index": 3}
        buttons, camera = env_actions_to_arrays(written["actions"])
        np.testing.assert_array_equal(episode.env_buttons, buttons)
        np.testing.assert_array_equal(episode.env_camera, camera)
        joint_buttons, joint_camera = env_arrays_to_joint(buttons, camera)
        np.testing.assert_array_equal(episode.agent_buttons, joint_buttons)
        np.testing.assert_array_equal(episode.agent_camera, joint_camera)
        assert episode.embeds.shape == (40, EMBED_DIM)
        assert np.isnan(episode.embeds[:EMBED_START]).all()
        np.testing.assert_array_equal(episode.embeds[EMBED_START:], written["embeds"][EMBED_START:])
        frames = episode.read_frames(0, 40)
        mae = np.abs(frames.astype(np.int16) - written["frames"]).reshape(40, -1).mean(axis=1)
        assert mae.max() < LEGACY_MAX_FRAME_MAE
        np.testing.assert_array_equal(episode.read_frames(17, 31), frames[17:31])  # mp4v seeks exactly too
    assert validate_episode(path, trust_legacy_pickle=True).ok


def test_legacy_reader_refuses_code_in_pickles_even_when_trusted(tmp_path):
    path = tmp_path / "legacy"
    write_legacy_episode(path, n=20)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(path / "actions.pkl", "wb") as file:
        pickle.dump([Exploit()], file)
    with pytest.raises(EpisodeFormatError, match="refusing .*system"):
        load_episode(path, trust_legacy_pickle=True)


def test_legacy_validation_catches_count_mismatch(tmp_path):
    path = tmp_path / "legacy"
    write_legacy_episode(path, n=20)
    (path / "len.txt").write_text("21")
    result = validate_episode(path, trust_legacy_pickle=True)
    assert not result.ok and "frame-count mismatch: len.txt 21" in result.errors[0]


# ---------------------------------------------------------------------------------------------
# Command line


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "data" / "EpisodeStorage.py"), *args],
        capture_output=True, text=True, timeout=120,
    )


def test_cli_one_line_per_episode(good_episode, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(good_episode[0], dataset / "a_good")
    shutil.copytree(good_episode[0], dataset / "b_broken")
    (dataset / "b_broken" / EMBEDS_FILE).unlink()
    shutil.copytree(good_episode[0], dataset / "c_good")
    write_legacy_episode(dataset / "d_legacy", n=20)

    result = run_cli("--validate", str(dataset))
    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 4
    assert lines[0] == f"OK   {dataset / 'a_good'}  {N_FRAMES} frames"
    assert lines[1].startswith(f"FAIL {dataset / 'b_broken'}: missing mineclip_embeds.npy")
    assert lines[2] == f"OK   {dataset / 'c_good'}  {N_FRAMES} frames"
    assert lines[3].startswith(f"FAIL {dataset / 'd_legacy'}: original STEVE-1 pickle layout")

    trusted = run_cli("--validate", str(dataset / "a_good"), str(dataset / "d_legacy"), "--trust_legacy_pickle", "--no_decode")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert trusted.stdout.splitlines() == [f"OK   {dataset / 'a_good'}  {N_FRAMES} frames", f"OK   {dataset / 'd_legacy'}  20 frames"]

    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run_cli("--validate", str(empty))
    assert nothing.returncode == 1 and nothing.stdout.startswith(f"FAIL {empty}: no episode directories")


def test_writer_extra_metadata(tmp_path):
    write_episode(tmp_path / "episode", n=20, extra_metadata={"task": "chop_tree"}, conversion={"crop": None})
    metadata = load_episode(tmp_path / "episode").metadata
    assert metadata["task"] == "chop_tree" and metadata["conversion"] == {"crop": None}
    with pytest.raises(ValueError, match="format's own fields"):
        EpisodeWriter(tmp_path / "other", extra_metadata={"num_frames": 3})
    with pytest.raises(TypeError):
        EpisodeWriter(tmp_path / "other", source={"when": object()})
    assert sorted(os.listdir(tmp_path)) == ["episode"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_reader_inherited_by_fork_reads_correctly(good_episode):
    path = good_episode[0] / FRAMES_FILE
    full = np.stack(list(read_video_frames(path)))
    reader = VideoReader(path)
    reader.read_range(0, 10)  # the parent holds an open, positioned decoder when it forks
    windows = [(start, min(start + 9, N_FRAMES)) for start in range(0, N_FRAMES, 4)] * 5
    # Free earlier tests' garbage here: a threaded FFmpeg decoder collected in the child (whose decoder
    # threads did not survive the fork) segfaults it, whatever this test does.
    gc.collect()
    pid = os.fork()
    if pid == 0:  # child: a forked data-loader worker; report through the exit status only
        try:
            good = all(np.array_equal(reader.read_range(a, b), full[a:b]) for a, b in windows[::-1])
        except BaseException:
            good = False
        os._exit(0 if good else 1)
    for a, b in windows:  # the parent reads at the same time through its own copy
        np.testing.assert_array_equal(reader.read_range(a, b), full[a:b])
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    reader.close()
