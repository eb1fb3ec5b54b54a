"""Labelling recordings without actions with the IDM: chunks, carried state, batching, step 1 end to end, bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from model_file_factory import write_model_file
from conftest import randomize_
from data.episode import IDM_CONFIDENCE, load_episode, validate_episode
from data.generation import convert_custom_data, overlay_actions
from toolkit_utils.file_hashes import file_sha256
from data.generation.idm_labelling import IDMLabeller, IDMLabellingError, idm_input_frames, label_video
from data.video_io import VideoReader, VideoWriter, read_video_frames
from embed_conditioned_policy import SteveAgentPolicy
from vpt_model.frame_resize import resize_frame
from test_contractor_conversion import real_gameplay_clip  # noqa: F401  (the fixture)
from vpt_model.action_space import ENV_BUTTONS
from vpt_model.config import preset
from vpt_model.inverse_dynamics import (
    IDMConfig,
    InverseActionPolicy,
    argmax_actions,
    idm_actions_to_env,
    idm_preset,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
CHUNK = 8  # small chunks keep the CPU tests fast; the CLI always uses VPT's 128


def _tiny_idm(memory: int = 16, seed: int = 0) -> InverseActionPolicy:
    """The tiny IDM; memory 24 (> timesteps 16) gives it an 8-frame cache so that carrying the state matters."""
    net_args, pi = idm_preset("tiny").to_model_kwargs()
    torch.manual_seed(seed)
    idm = InverseActionPolicy(IDMConfig.from_model_kwargs({**net_args, "attention_memory_size": memory}, pi)).eval()
    randomize_(idm, seed=seed + 1)
    return idm


def _frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)


def _by_hand(idm: InverseActionPolicy, frames: np.ndarray, chunk: int, carry: bool = True):
    """VPT's usage written out: predict on consecutive chunks, first all False, the state carried between calls."""
    state, parts = idm.initial_state(1), []
    for start in range(0, len(frames), chunk):
        img = torch.from_numpy(frames[start : start + chunk])[None]
        with torch.no_grad():
            pd, new_state = idm({"img": img}, torch.zeros(img.shape[:2], dtype=torch.bool), state)
        state = new_state if carry else idm.initial_state(1)
        parts.append([x[0].numpy() for x in argmax_actions(pd)])
    buttons, camera, confidence = (np.concatenate(p) for p in zip(*parts))
    return (*idm_actions_to_env(buttons, camera), confidence)


@pytest.mark.parametrize("memory", [16, 24])  # the 4x layout (nothing cached) and one with a cache
def test_chunked_labelling_equals_chunk_by_chunk_calls_with_the_state_carried(memory):
    idm = _tiny_idm(memory)
    frames = _frames(3 * CHUNK + 5, seed=1)  # three full chunks and a 5-frame tail
    labels = IDMLabeller(idm, chunk=CHUNK).label_frames(frames)
    buttons, camera, confidence = _by_hand(idm, frames, CHUNK)
    assert len(labels) == len(frames)
    np.testing.assert_array_equal(labels.env_buttons, buttons)
    np.testing.assert_array_equal(labels.env_camera, camera)
    np.testing.assert_array_equal(labels.confidence, confidence)
    assert 0.2 < labels.env_buttons[:, :20].mean() < 0.8 and len(np.unique(labels.env_camera)) > 3  # varied labels
    if memory > 16:  # the carried cache changes what later chunks see
        _, _, fresh = _by_hand(idm, frames, CHUNK, carry=False)
        assert np.abs(fresh[CHUNK:] - confidence[CHUNK:]).max() > 1e-4
        np.testing.assert_array_equal(fresh[:CHUNK], confidence[:CHUNK])


def test_recordings_batched_together_get_the_labels_they_get_alone():
    idm = _tiny_idm(24)
    recordings = {"a": _frames(2 * CHUNK + 3, 2), "b": _frames(CHUNK, 3), "c": _frames(4 * CHUNK, 4), "d": _frames(CHUNK + 9, 5)}
    alone = {key: IDMLabeller(idm, chunk=CHUNK).label_frames(frames) for key, frames in recordings.items()}
    batched = dict(IDMLabeller(idm, chunk=CHUNK, batch_size=3).label_streams((k, iter(f)) for k, f in recordings.items()))
    assert sorted(batched) == sorted(recordings)
    for key in recordings:
        np.testing.assert_array_equal(batched[key].env_buttons, alone[key].env_buttons)
        np.testing.assert_array_equal(batched[key].env_camera, alone[key].env_camera)
        np.testing.assert_allclose(batched[key].confidence, alone[key].confidence, atol=1e-5)


def test_a_short_or_broken_recording_fails_alone():
    idm = _tiny_idm()

    def breaks_after(n):
        yield from _frames(n, 6)
        raise ValueError("video.mp4: corrupt or truncated at frame 20")

    streams = [("short", iter(_frames(CHUNK - 1, 7))), ("broken", breaks_after(CHUNK + 4)), ("fine", iter(_frames(2 * CHUNK, 8)))]
    results = dict(IDMLabeller(idm, chunk=CHUNK, batch_size=2).label_streams(streams))
    assert str(results["short"]) == (f"short: {CHUNK - 1} frames, fewer than one IDM chunk of {CHUNK}; the IDM labels a frame "
                                     f"from the frames around it (use recordings of at least {CHUNK} frames)")
    assert isinstance(results["broken"], IDMLabellingError) and "corrupt or truncated at frame 20" in str(results["broken"])
    assert len(results["fine"]) == 2 * CHUNK
    with pytest.raises(IDMLabellingError, match="fewer than one IDM chunk"):
        IDMLabeller(idm, chunk=CHUNK).label_frames(_frames(3, 9))


def _write_video(path: Path, frames: np.ndarray, fps: int = 20, crf: int = 0) -> None:
    with VideoWriter(path, fps=fps, crf=crf) as writer:
        for frame in frames:
            writer.write(frame)


def test_idm_frames_are_the_policys_resize_of_the_20fps_frames(tmp_path):
    """Frames of any size go to 640x360 first (as every step-1 recording), then 128x128, both INTER_LINEAR."""
    source = np.random.default_rng(0).integers(0, 256, (12, 72, 96, 3), dtype=np.uint8)
    _write_video(tmp_path / "v.mp4", source)
    decoded = list(read_video_frames(tmp_path / "v.mp4"))
    picked = list(idm_input_frames(tmp_path / "v.mp4", np.array([0, 0, 3, 4, 4, 11])))
    expected = [resize_frame(resize_frame(decoded[i], (360, 640)), (128, 128)) for i in (0, 0, 3, 4, 4, 11)]
    assert not np.array_equal(expected[2], resize_frame(decoded[3], (128, 128)))  # the 640x360 step matters
    assert len(picked) == 6 and all(np.array_equal(a, b) for a, b in zip(picked, expected))
    assert len(list(idm_input_frames(tmp_path / "v.mp4"))) == 12


# ---- step 1: convert_custom_data.py with --idm_model / --idm_weights --------------------------------------


@pytest.fixture(scope="module")
def idm_files(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny IDM's .model file and random .weights."""
    root = tmp_path_factory.mktemp("idm")
    write_model_file(idm_preset("tiny"), root / "tiny_idm.model")
    torch.save(_tiny_idm().state_dict(), root / "tiny_idm.weights")
    return root / "tiny_idm.model", root / "tiny_idm.weights"


def _convert(input_dir: Path, output_dir: Path, *extra: str) -> int:
    return convert_custom_data.main(["--input_dir", str(input_dir), "--output_dir", str(output_dir), "--demo_random_mineclip",
                                     "--min_timesteps", "16", "--device", "cpu", *extra])


def _cut_clip(source: Path, target: Path, n: int, fps: float) -> None:
    """The first n frames of a real clip, at its own frame rate."""
    target.parent.mkdir(parents=True)
    frames = []
    for i, frame in enumerate(read_video_frames(source)):
        if i == n:
            break
        frames.append(frame)
    _write_video(target, np.stack(frames), fps=round(fps), crf=18)


@pytest.mark.slow
def test_real_gameplay_labelled_by_the_idm_converts_validates_samples_and_trains(tmp_path, real_gameplay_clip, idm_files, capsys):
    """Real 640x360 clips without actions (30 fps) go through step 1 with a tiny random IDM, then steps 2 and 3."""
    model, weights = idm_files
    with VideoReader(real_gameplay_clip) as reader:
        fps = reader.fps
    n_source = int(np.ceil(140 * fps / 20))  # 140 frames at 20 fps: one full chunk of 128 and a tail of 12
    inputs = tmp_path / "in"
    _cut_clip(real_gameplay_clip, inputs / "episode_a" / "video.mp4", n_source, fps)
    (inputs / "episode_short").mkdir()
    _write_video(inputs / "episode_short" / "video.mp4", _frames(100, 1)[:, :64, :96])  # < one chunk: fails alone
    recorded = inputs / "episode_recorded"
    recorded.mkdir()
    _write_video(recorded / "video.mp4", _frames(60, 2)[:, :64, :96])
    (recorded / "actions.jsonl").write_text("".join(json.dumps({"forward": 1, "camera": [0.0, 1.0]}) + "\n" for _ in range(60)))

    code = _convert(inputs, tmp_path / "out", "--idm_model", str(model), "--idm_weights", str(weights), "--idm_batch_size", "2")
    out = capsys.readouterr().out
    assert code == 1  # the short recording failed, alone
    assert f"FAIL episode_short: {inputs / 'episode_short' / 'video.mp4'}: 100 frames, fewer than one IDM chunk of 128" in out
    for name in ("episode_a", "episode_recorded"):
        result = validate_episode(tmp_path / "out" / name)
        assert result.ok, result.errors
    assert not (tmp_path / "out" / "episode_short").exists()

    episode = load_episode(tmp_path / "out" / "episode_a")
    source = episode.metadata["source"]
    assert source["actions"] == "idm" and source["source_fps"] == pytest.approx(fps)
    assert source["idm"]["model_sha256"] == file_sha256(model) and source["idm"]["weights_sha256"] == file_sha256(weights)
    assert source["idm"]["chunk"] == 128 and source["idm"]["dtype"] == "fp32"
    assert load_episode(tmp_path / "out" / "episode_recorded").metadata["source"]["actions"] == "recorded"
    assert load_episode(tmp_path / "out" / "episode_recorded").idm_confidence is None

    # The stored actions are the IDM's labels of the 20 fps frames, null frames dropped like any recording's.
    labeller = IDMLabeller(InverseActionPolicy(idm_preset("tiny")), chunk=128)
    labeller.idm.load_state_dict(torch.load(weights, weights_only=True))
    indices = np.minimum(np.floor(np.arange(140) * fps / 20 + 1e-9).astype(int), n_source - 1)
    labels = label_video(labeller, inputs / "episode_a" / "video.mp4", indices)
    keep = labels.env_buttons.any(axis=1) | labels.env_camera.any(axis=1)  # the default null rule: the env action's
    assert episode.num_frames == keep.sum() > 100
    np.testing.assert_array_equal(episode.env_buttons, labels.env_buttons[keep])
    # the default camera labels: the IDM's estimate truncated to whole degrees, as a recorded move would be
    np.testing.assert_array_equal(episode.env_camera, np.trunc(labels.env_camera[keep]))
    np.testing.assert_array_equal(episode.idm_confidence, labels.confidence[keep])
    assert episode.read_frames(0, 8).std() > 10  # real gameplay pixels

    # Step 2 and 3: the labelled episodes sample and train like any other.
    from data.sampling import generate_sampling
    from training import train

    assert generate_sampling.main(["--name", "idm", "--output_dir", str(tmp_path / "samplings"), "--dataset_dirs",
                                   str(tmp_path / "out"), "--val_frames", "40", "--train_frames", "-1", "--T", "32",
                                   "--allow_demo_embeddings"]) in (0, None)
    listed = (tmp_path / "samplings" / "idm_train.txt").read_text().split() + (tmp_path / "samplings" / "idm_val.txt").read_text().split()
    assert sorted(Path(p).name for p in listed) == ["episode_a", "episode_recorded"]
    args = ["--cpu", "--in_model", "tiny", "--sampling", "idm", "--sampling_dir", str(tmp_path / "samplings"), "--T", "32",
            "--trunc_t", "16", "--batch_size", "2", "--gradient_accumulation_steps", "1", "--max_steps", "2", "--num_workers", "0",
            "--checkpoint_dir", str(tmp_path / "run" / "ckpt"), "--out_weights", str(tmp_path / "run" / "idm.weights"),
            "--log_dir", str(tmp_path / "run" / "logs"), "--val_freq", "100", "--val_freq_begin", "100", "--save_freq", "100"]
    assert train.main(args) == 0
    assert (tmp_path / "run" / "idm_latest.weights").is_file()


@pytest.fixture
def unlabelled_dir(tmp_path) -> Path:
    """One recording without actions (generated frames; the refusals below happen before any labelling)."""
    episode = tmp_path / "in" / "episode_001"
    episode.mkdir(parents=True)
    _write_video(episode / "video.mp4", _frames(130, 0)[:, :64, :96])
    return tmp_path / "in"


def _evil_model(path: Path) -> Path:
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(path.parent / "pwned"),))

    net_args, pi = idm_preset("tiny").to_model_kwargs()
    path.write_bytes(__import__("pickle").dumps({"model": {"args": {"net": {"args": {**net_args, "hidsize": Boom()}}, "pi_head_opts": pi}}}))
    return path


def _policy_weights(path: Path) -> Path:
    torch.save(SteveAgentPolicy(preset("tiny")).state_dict(), path)
    return path


def _other_idm_weights(path: Path) -> Path:
    net_args, pi = idm_preset("tiny").to_model_kwargs()
    wider = IDMConfig.from_model_kwargs({**net_args, "hidsize": 48}, pi)
    torch.save(InverseActionPolicy(wider).state_dict(), path)
    return path


BAD_IDM_FILES = [  # (what, --idm_model, --idm_weights, the one line on stderr)
    ("a .model that builds objects", lambda d: _evil_model(d / "evil.model"), "weights",
     "--idm_model {model}: refusing to build object posix.system: a .model file holds only plain containers and numbers; "
     "pass VPT's 4x_idm.model"),
    ("a policy's weights", "model", lambda d: _policy_weights(d / "2x.weights"),
     "--idm_weights {weights}: this is a VPT policy's weights file (it has value_head.*), not the inverse dynamics model's; "
     "use 4x_idm.weights; pass the 4x_idm.weights that goes with --idm_model"),
    ("another IDM's weights", "model", lambda d: _other_idm_weights(d / "other.weights"),
     "--idm_weights {weights}: {weights} does not match InverseActionPolicy: shape mismatches"),
]


@pytest.mark.parametrize("what, model, weights, line", BAD_IDM_FILES, ids=[b[0] for b in BAD_IDM_FILES])
def test_bad_idm_files_are_one_line_and_nothing_is_written(what, model, weights, line, unlabelled_dir, idm_files, tmp_path, capsys):
    good_model, good_weights = idm_files
    model = good_model if model == "model" else model(tmp_path)
    weights = good_weights if weights == "weights" else weights(tmp_path)
    with pytest.raises(SystemExit) as caught:
        _convert(unlabelled_dir, tmp_path / "out", "--idm_model", str(model), "--idm_weights", str(weights))
    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("convert_custom_data.py: " + line.format(model=model, weights=weights))
    assert not (tmp_path / "out").exists() and not (tmp_path / "pwned").exists()


def test_without_idm_files_the_message_names_the_options(unlabelled_dir, tmp_path, capsys):
    """Not given, or given but not downloaded: the recordings without actions fail alone in one line."""
    assert _convert(unlabelled_dir, tmp_path / "out") == 1
    out = capsys.readouterr().out
    assert f"FAIL {unlabelled_dir}: 1 recording(s) have video.mp4 but no actions.jsonl (episode_001); training needs the " \
           "action of every frame: pass --idm_model and --idm_weights" in out
    assert not (tmp_path / "out" / "episode_001").exists()
    missing = tmp_path / "nowhere.model"
    assert _convert(unlabelled_dir, tmp_path / "out", "--idm_model", str(missing), "--idm_weights", str(missing)) == 1
    assert f"--idm_model {missing} and --idm_weights {missing} not found: download them with ONLY=idm bash " \
           "download_weights.sh" in capsys.readouterr().out


def test_overlay_of_an_episode_and_of_a_raw_recording(tmp_path, idm_files):
    from episode_factory import make_episode

    make_episode(tmp_path / "ep", 40, seed=1)
    assert overlay_actions.main(["--episode", str(tmp_path / "ep"), "--output", str(tmp_path / "ep.mp4"), "--seconds", "1"]) == 0
    with VideoReader(tmp_path / "ep.mp4") as reader:
        assert (reader.num_frames, reader.height, reader.width) == (20, 512, 512)
        drawn = reader.read_range(0, 1)[0]
    plain = load_episode(tmp_path / "ep").read_frames(0, 1)[0].repeat(4, 0).repeat(4, 1)
    assert np.abs(drawn[:80].astype(int) - plain[:80]).mean() > 5  # text drawn in the top rows

    video = tmp_path / "rec.mp4"
    _write_video(video, _frames(130, 3)[:, :72, :128])
    model, weights = idm_files
    argv = ["--video", str(video), "--idm_model", str(model), "--idm_weights", str(weights), "--output", str(tmp_path / "v.mp4"),
            "--seconds", "7", "--device", "cpu"]  # rounded down to one whole chunk
    assert overlay_actions.main(argv) == 0
    with VideoReader(tmp_path / "v.mp4") as reader:
        assert (reader.num_frames, reader.height, reader.width) == (128, 360, 640)


def test_overlay_refuses_a_clip_shorter_than_one_chunk(tmp_path, idm_files, capsys):
    model, weights = idm_files
    with pytest.raises(SystemExit) as caught:
        overlay_actions.main(["--video", str(tmp_path / "x.mp4"), "--output", str(tmp_path / "o.mp4"), "--seconds", "7"])
    assert caught.value.code == 2 and "--video" in capsys.readouterr().err
    _write_video(tmp_path / "x.mp4", _frames(20, 1)[:, :64, :64])
    with pytest.raises(SystemExit):
        overlay_actions.main(["--video", str(tmp_path / "x.mp4"), "--idm_model", str(model), "--idm_weights", str(weights),
                              "--output", str(tmp_path / "o.mp4"), "--seconds", "2"])
    assert "--seconds 2.0: the IDM labels chunks of 128 frames; use at least 6.4 seconds" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_the_episode_validator_checks_the_confidence_array(tmp_path):
    from episode_factory import make_episode

    make_episode(tmp_path / "ep", 30, seed=2)
    arrays = dict(np.load(tmp_path / "ep" / "actions.npz"))
    bad = dict(arrays, **{IDM_CONFIDENCE: np.full((30, 22), 1.5, np.float32)})
    np.savez(tmp_path / "ep" / "actions.npz", **bad)
    errors = validate_episode(tmp_path / "ep").errors
    assert "actions.npz: idm_confidence has values outside [0, 1] (first at frame 0)" in errors
    np.savez(tmp_path / "ep" / "actions.npz", **dict(arrays, **{IDM_CONFIDENCE: np.ones((29, 22), np.float32)}))
    assert "actions.npz: idm_confidence is float32 [29, 22], expected float32 [30, 22]" in validate_episode(tmp_path / "ep").errors
    assert len(ENV_BUTTONS) == 23 and 22 == len(__import__("vpt_model.inverse_dynamics").inverse_dynamics.CONFIDENCE_NAMES)


def test_null_labelled_frames_are_dropped_with_their_confidence(tmp_path):
    """The episode keeps the labelled frames whose action is not null, each with its own confidence row."""
    import dataclasses as dc

    from data.generation.episode_conversion import ConversionOptions, convert_recording, load_goal_encoder
    from data.generation.idm_labelling import IDMLabels

    n = 40
    _write_video(tmp_path / "v.mp4", _frames(n, 4)[:, :64, :96])
    env_buttons = np.zeros((n, len(ENV_BUTTONS)), np.uint8)
    env_buttons[::2, ENV_BUTTONS.index("forward")] = 1  # odd frames: null (no button, no camera move)
    env_camera = np.zeros((n, 2), np.float32)
    env_camera[5] = (0.0, 0.6154)  # ... except frame 5, which moves the camera
    confidence = np.linspace(0.5, 1.0, n * 22, dtype=np.float32).reshape(n, 22)
    actions = IDMLabels(env_buttons, env_camera, confidence).to_actions()
    model, info = load_goal_encoder(None, True, "cpu")
    episode_dir, _ = convert_recording(tmp_path / "v.mp4", actions, tmp_path / "ep", model,
                                       dc.replace(ConversionOptions(), min_timesteps=16), {"kind": "test"}, progress=False)
    keep = np.zeros(n, bool)
    keep[::2] = True
    keep[5] = True
    episode = load_episode(episode_dir)
    assert episode.num_frames == keep.sum() == 21
    np.testing.assert_array_equal(episode.idm_confidence, confidence[keep])
    np.testing.assert_array_equal(episode.env_camera, np.trunc(env_camera[keep]))  # 0.6154 -> 0 (default labels)
    assert episode.metadata["conversion"]["actions_format"] == "idm"
    assert validate_episode(episode_dir).ok
