"""Label recordings that have no actions with VPT's inverse dynamics model (IDM), as VPT labelled 70,000 hours.

A recording is labelled the way VPT's `IDMAgent.predict_actions` is called on consecutive pieces of a video:
its 20 fps frames, resized to 128x128 like the policy's input (cv2 INTER_LINEAR), go through the IDM in
chunks of `chunk` frames (128 by default, run_inverse_dynamics_model.py's --n-frames) with `first` all
False and the recurrent state carried from chunk to chunk; each frame's action is the argmax of every head.
The last chunk of a recording holds the frames left over (fewer than `chunk`) and is one shorter call, as
the original does with the tail of a video. A recording shorter than one chunk is refused: the IDM attends
across its chunk (past and future), and a short chunk gives it little to go on.

The 4x IDM's state is empty (memory 16 = timesteps 16) and its Conv3d pads each chunk with zeros, so the
labels of a frame depend on where the chunk boundaries fall: always chunk from the first frame to match.

Recordings are batched on the GPU: up to `batch_size` recordings advance together, one chunk each per
forward (the short last chunks run alone), while the next chunks are decoded in background threads.

Each frame's label is an env action plus its confidence: the probability of the chosen class of each of
the 22 outputs (20 buttons, camera pitch, camera yaw; `CONFIDENCE_NAMES`). Episodes keep it as the
`idm_confidence` array [N, 22] float32 in actions.npz, for filtering frames or episodes afterwards.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Hashable, Iterable, Iterator, NamedTuple

import numpy as np
import torch

from data.episode import FPS
from data.generation.contractor_actions import IDM_FORMAT, RecordingActions
from data.generation.episode_conversion import (
    SOURCE_HEIGHT,
    SOURCE_WIDTH,
    ConversionError,
    ConversionOptions,
    convert_recording,
    resample_indices,
)
from data.video_io import VideoReader, read_video_frames
from vpt_model.frame_resize import resize_frame
from toolkit_utils.file_hashes import file_sha256
from toolkit_utils import cli
from vpt_model.inverse_dynamics import (
    CONFIDENCE_NAMES,
    InverseActionPolicy,
    argmax_actions,
    idm_actions_to_env,
    load_idm_config,
    load_idm_weights,
)
from vpt_model.policy import PolicyState

DEFAULT_CHUNK = 128  # frames per IDM call (VPT's run_inverse_dynamics_model.py --n-frames)
IDM_FRAME_SIZE = (128, 128)  # (height, width) of the IDM's input, as the policy's
DTYPES = ("fp32", "bf16")  # fp32: what VPT computes; bf16: autocast, faster on GPUs


class IDMLabellingError(ValueError):
    """One recording cannot be labelled; the message names the file and the fix."""


@dataclasses.dataclass
class LabelledActions(RecordingActions):
    """Per-frame env actions predicted by the IDM, with each frame's confidence (rows follow the frames)."""

    idm_confidence: np.ndarray | None = None  # (N, 22) float32, CONFIDENCE_NAMES order


@dataclasses.dataclass
class IDMLabels:
    """The IDM's argmax labels of one recording: frame i -> env action i and its confidence."""

    env_buttons: np.ndarray  # (N, 23) uint8, ENV_BUTTONS order (the IDM never presses ESC, pickItem, swapHands)
    env_camera: np.ndarray  # (N, 2) float32, pitch and yaw in degrees (bin centres)
    confidence: np.ndarray  # (N, 22) float32 in [0, 1], CONFIDENCE_NAMES order

    def __len__(self) -> int:
        return len(self.env_buttons)

    def to_actions(self) -> LabelledActions:
        """The actions the converter filters and stores; no GUI is known, so no cursor is drawn."""
        n = len(self)
        env_null = ~self.env_buttons.any(axis=1) & ~self.env_camera.any(axis=1)
        return LabelledActions(self.env_buttons, self.env_camera.astype(np.float64), env_null, np.zeros(n, bool),
                               np.full((n, 2), np.nan), IDM_FORMAT, self.confidence)


@dataclasses.dataclass
class _Stream:
    """One recording being labelled: its frame iterator, the chunk being read, its state and labels so far."""

    key: Hashable
    frames: Iterator[np.ndarray]
    state: PolicyState
    pending: Future | None = None
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = dataclasses.field(default_factory=list)

    @property
    def num_labelled(self) -> int:
        return sum(len(p[0]) for p in self.parts)


class IDMLabeller:
    """Runs an IDM over whole recordings: chunked, state carried, batched over recordings."""

    def __init__(self, idm: InverseActionPolicy, device: torch.device | str = "cpu", dtype: str = "fp32",
                 chunk: int = DEFAULT_CHUNK, batch_size: int = 1) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if chunk < 1 or batch_size < 1:
            raise ValueError(f"chunk ({chunk}) and batch_size ({batch_size}) must be >= 1")
        self.device = torch.device(device)
        self.idm = idm.to(self.device).eval()
        self.dtype, self.chunk, self.batch_size = dtype, chunk, batch_size

    @torch.no_grad()
    def predict(self, frames: np.ndarray, state: PolicyState) -> tuple[np.ndarray, np.ndarray, np.ndarray, PolicyState]:
        """One IDM call: frames (B, T, 128, 128, 3) uint8 RGB -> buttons (B, T, 20), camera bins (B, T, 2),
        confidence (B, T, 22) as numpy, and the state for the next chunk (`first` all False)."""
        img = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        first = torch.zeros(img.shape[:2], dtype=torch.bool, device=self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bf16"):
            pd, state = self.idm({"img": img}, first, state)
        buttons, camera, confidence = argmax_actions(pd)
        return buttons.cpu().numpy(), camera.cpu().numpy(), confidence.float().cpu().numpy(), state

    def label_frames(self, frames: np.ndarray | Iterable[np.ndarray], name: str = "<frames>") -> IDMLabels:
        """Label one recording from its 128x128 RGB frames (an array or an iterator); raises IDMLabellingError."""
        ((_, result),) = self.label_streams([(name, iter(frames))])
        if isinstance(result, Exception):
            raise result
        return result

    def label_streams(
        self, streams: Iterable[tuple[Hashable, Iterator[np.ndarray]]]
    ) -> Iterator[tuple[Hashable, IDMLabels | IDMLabellingError]]:
        """Label many recordings, each given as (key, iterator of 128x128 RGB uint8 frames).

        Yields (key, IDMLabels) for each recording as it completes, or (key, IDMLabellingError) for one
        that could not be read or is shorter than one chunk; the others go on. A decoding error is
        reported for its recording when its iterator raises ValueError or OSError (VideoError is one).
        """
        todo = iter(streams)
        active: list[_Stream] = []
        with ThreadPoolExecutor(max_workers=self.batch_size, thread_name_prefix="idm-decode") as pool:
            while True:
                for key, frames in itertools.islice(todo, self.batch_size - len(active)):
                    stream = _Stream(key, frames, self.idm.initial_state(1, self.device))
                    stream.pending = pool.submit(_read_chunk, stream.frames, self.chunk)
                    active.append(stream)
                if not active:
                    return
                full: list[tuple[_Stream, np.ndarray]] = []
                last: list[tuple[_Stream, np.ndarray]] = []
                for stream in list(active):
                    try:
                        chunk = stream.pending.result()
                    except (ValueError, OSError) as error:
                        active.remove(stream)
                        message = " ".join(str(error).split())
                        named = message if message.startswith(str(stream.key)) else f"{stream.key}: {message}"
                        yield stream.key, IDMLabellingError(named)
                        continue
                    if len(chunk) == self.chunk:
                        stream.pending = pool.submit(_read_chunk, stream.frames, self.chunk)  # decodes during the forward
                        full.append((stream, chunk))
                    else:
                        active.remove(stream)
                        last.append((stream, chunk))
                if full:
                    self._advance([s for s, _ in full], np.stack([c for _, c in full]))
                for stream, chunk in last:
                    if stream.num_labelled == 0:
                        yield stream.key, IDMLabellingError(
                            f"{stream.key}: {len(chunk)} frames, fewer than one IDM chunk of {self.chunk}; the IDM "
                            f"labels a frame from the frames around it (use recordings of at least {self.chunk} frames)"
                        )
                        continue
                    if len(chunk):
                        self._advance([stream], chunk[None])  # the tail: one shorter call, as the original
                    yield stream.key, _labels(stream.parts)

    def _advance(self, streams: list[_Stream], frames: np.ndarray) -> None:
        """One batched IDM call on one chunk per stream; appends the labels and carries each stream's state."""
        state = _stack_states([s.state for s in streams])
        buttons, camera, confidence, state = self.predict(frames, state)
        for i, stream in enumerate(streams):
            stream.parts.append((buttons[i], camera[i], confidence[i]))
            stream.state = [tuple(t[i : i + 1] for t in layer) for layer in state]  # type: ignore[misc]


def _read_chunk(frames: Iterator[np.ndarray], n: int) -> np.ndarray:
    """The next n frames (fewer at the end) as one (k, 128, 128, 3) uint8 array."""
    got = list(itertools.islice(frames, n))
    return np.stack(got) if got else np.zeros((0, *IDM_FRAME_SIZE, 3), np.uint8)


def _stack_states(states: list[PolicyState]) -> PolicyState:
    """Per-recording states (batch 1 each) -> one batched state."""
    if len(states) == 1:
        return states[0]
    return [tuple(torch.cat(parts) for parts in zip(*layers)) for layers in zip(*states)]  # type: ignore[misc]


def _labels(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> IDMLabels:
    """Concatenated chunk outputs -> env actions and confidence per frame."""
    buttons, camera, confidence = (np.concatenate(p) for p in zip(*parts))
    env_buttons, env_camera = idm_actions_to_env(buttons, camera)
    return IDMLabels(env_buttons, env_camera, confidence.astype(np.float32))


def idm_frame(frame: np.ndarray) -> np.ndarray:
    """A decoded RGB frame of any size -> the IDM's input (128, 128, 3): brought to 640x360 first, like every
    recording in step 1 (what contractor videos are, the IDM's training data), then resized as VPT's agent input."""
    if frame.shape[:2] != (SOURCE_HEIGHT, SOURCE_WIDTH):
        frame = resize_frame(frame, (SOURCE_HEIGHT, SOURCE_WIDTH))
    return resize_frame(frame, IDM_FRAME_SIZE)


def idm_input_frames(video: str | os.PathLike, frame_indices: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """The frames of a video the IDM labels (`idm_frame`: 640x360, then 128x128, INTER_LINEAR both).

    `frame_indices` (ascending) picks the frames of a recording resampled to 20 fps: output k is video frame
    frame_indices[k] (a frame may repeat); None: every frame.
    """
    frames = read_video_frames(video)
    if frame_indices is None:
        for frame in frames:
            yield idm_frame(frame)
        return
    wanted = iter(np.asarray(frame_indices).tolist())
    target = next(wanted, None)
    for index, frame in enumerate(frames):
        if target is None:
            return
        resized = None
        while target == index:
            resized = idm_frame(frame) if resized is None else resized
            yield resized
            target = next(wanted, None)


def idm_metadata(model: str | os.PathLike, weights: str | os.PathLike, labeller: IDMLabeller) -> dict[str, Any]:
    """What an episode labelled by this IDM records about it (`source.idm` in metadata.json)."""
    return {
        "model": os.path.abspath(model),
        "model_sha256": file_sha256(model),
        "weights": os.path.abspath(weights),
        "weights_sha256": file_sha256(weights),
        "chunk": labeller.chunk,
        "dtype": labeller.dtype,
        "decision": "argmax",
        "confidence": {"array": "idm_confidence", "file": "actions.npz", "columns": list(CONFIDENCE_NAMES)},
    }


def label_video(labeller: IDMLabeller, video: str | os.PathLike, frame_indices: np.ndarray | None = None) -> IDMLabels:
    """Label one video file (its frames at `frame_indices`, or all); raises IDMLabellingError naming the file."""
    return labeller.label_frames(idm_input_frames(video, frame_indices), name=str(Path(video)))


def load_labeller(model: str, weights: str, device: str, dtype: str = "fp32", batch_size: int = 1) -> IDMLabeller:
    """The labeller for --idm_model/--idm_weights; a bad file is one cli.SettingError line naming the option and the fix."""
    fix = "download 4x_idm.model and 4x_idm.weights with: ONLY=idm bash download_weights.sh"
    cli.existing_file("--idm_model", model, fix)
    cli.existing_file("--idm_weights", weights, fix)
    try:
        idm = InverseActionPolicy(load_idm_config(model))
    except ValueError as error:
        cli.refuse("--idm_model", model, without_path(error, model), "pass VPT's 4x_idm.model")
    try:
        load_idm_weights(idm, weights)
    except ValueError as error:  # unreadable, a policy's weights, or keys that do not match (all named)
        cli.refuse("--idm_weights", weights, without_path(error, weights), "pass the 4x_idm.weights that goes with --idm_model")
    return IDMLabeller(idm, device, dtype, DEFAULT_CHUNK, batch_size)


def without_path(error: BaseException, path: str | os.PathLike) -> str:
    """An error message without a leading '<path>: ' (the refusal names the path already)."""
    message, prefix = str(error), f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


class Outcome(NamedTuple):
    """What became of one recording: the episode written (None when skipped or failed) and why."""

    recording: Path
    episode: Path | None
    message: str
    failed: bool = False


def label_and_convert(
    episode_dirs: list[Path], output_dir: Path, video_name: str, labeller: IDMLabeller, idm_info: dict[str, Any],
    goal_encoder: Any, options: ConversionOptions, device: str, mineclip_info: dict[str, Any],
) -> Iterator[Outcome]:
    """Label recordings without actions and convert each as soon as it is labelled, like any other recording.

    One Outcome per recording; a recording that cannot be read, labelled or converted fails alone
    (failed=True, the message names the file) and the others go on. Recordings at another frame rate
    are resampled to 20 fps first (what the IDM saw in training); the episode keeps exactly the labelled
    frames, minus those whose labelled action is null (options.null_filter), with their confidence.
    """
    plans: dict[Path, tuple[float, int, np.ndarray | None]] = {}  # video -> (fps, frames, 20 fps frame indices)
    for episode_dir in episode_dirs:
        video = episode_dir / video_name
        try:
            with VideoReader(video) as reader:
                fps, n_video = reader.fps, reader.num_frames
        except ValueError as error:
            yield Outcome(episode_dir, None, str(error), failed=True)
            continue
        indices = resample_indices(n_video, fps, FPS) if abs(fps - FPS) > 1e-3 else None
        plans[video] = (fps, n_video, indices)
    streams = ((video, idm_input_frames(video, plan[2])) for video, plan in plans.items())
    for video, result in labeller.label_streams(streams):
        fps, n_video, indices = plans[video]
        episode_dir = video.parent
        if isinstance(result, Exception):
            yield Outcome(episode_dir, None, str(result), failed=True)
            continue
        if indices is not None and len(result) != len(indices):
            yield Outcome(episode_dir, None, f"{video}: decoded {len(result)} of the {len(indices)} frames to label", failed=True)
            continue
        source = {"kind": "custom", "video": str(video), "video_bytes": video.stat().st_size, "source_fps": fps,
                  "resampled_to_fps": FPS,
                  "source_frames": n_video, "mineclip": mineclip_info, "actions": "idm", "idm": idm_info}
        try:
            episode, message = convert_recording(video, result.to_actions(), output_dir / episode_dir.name, goal_encoder,
                                                 options, source, device, frame_indices=indices)
        except (ConversionError, OSError, ValueError) as error:
            yield Outcome(episode_dir, None, str(error).splitlines()[0], failed=True)
            continue
        yield Outcome(episode_dir, episode, f"{message}, actions labelled by the IDM" if episode else message)
