"""One recording (video + per-line actions) -> one episode directory.

Per kept frame, the pipeline of the original converter: the decoded frame is brought to 640x360 when the
source has another size (cv2 INTER_LINEAR; 640x360 is what the agent sees in MineRL and what contractor
videos are), the GUI cursor is drawn while a GUI is open, then the frame is resized to 128x128 for the agent
and to 256x160 for MineCLIP (INTER_LINEAR both). The MineCLIP goal embedding of every kept frame is computed
from the 16 kept frames ending at it.

Frame rate (contractor and custom recordings alike): line i of the actions belongs to video frame i. A video
within 20 +- 0.5 fps is taken as 20 fps. Any other rate from 5 to 240 fps is resampled to 20 fps (constant
frame rate assumed): output frame k shows the source frame at time k/20 s. Faster sources: an output frame
carries the actions of the source frames it stands for merged (buttons pressed in any of them, camera moves
added up). Slower sources repeat a frame: each repeat holds its buttons and an equal share of its camera move,
so every recorded move is counted once (`merge_actions`). Other rates are refused. The labelling rules (camera
labels, null filter: data.generation.labelling) apply after that.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.episode import EMBED_START, FPS, FRAME_SIZE, EpisodeExistsError, EpisodeWriter
from data.generation.contractor_actions import RecordingActions
from data.generation.cursor import draw_cursor
from data.generation.labelling import (
    CAMERA_LABELS,
    DEFAULT_CAMERA_LABELS,
    DEFAULT_NULL_FILTER,
    NULL_FILTERS,
    keep_mask,
    label_camera,
)
from data.video_io import SEQUENTIAL_THREADS, VideoReader, read_video_frames
from mineclip_model.embedding import WINDOW, embed_frames_sliding
from mineclip_model.image_encoder import MINECLIP_FRAME_HEIGHT, MINECLIP_FRAME_WIDTH
from mineclip_model.mineclip import MineCLIP, MineCLIPConfig, load_mineclip
from toolkit_utils import cli
from toolkit_utils.cpu_cores import usable_cores
from vpt_model.frame_resize import resize_frame

EMBED_CHUNK_FRAMES = 2048  # MineCLIP frames held in memory at once (~250 MB); long videos are embedded in chunks
SOURCE_WIDTH, SOURCE_HEIGHT = 640, 360  # contractor videos; what the agent sees in MineRL
FPS_TOLERANCE = 0.5  # container headers round: 19.98 fps is a 20 fps recording
MIN_SOURCE_FPS, MAX_SOURCE_FPS = 5.0, 240.0  # outside: a broken header rather than a recording
# Recordings shorter than this after null filtering are skipped, contractor and custom alike (one default for
# every entrypoint and 1_generate_dataset.sh's MIN_TIMESTEPS; the original's). Step 2 needs T + 15 frames.
DEFAULT_MIN_TIMESTEPS = 1000
SETTING_NAMES = ("options", "script")


class ConversionError(ValueError):
    """This recording cannot be converted; the message names the file and the reason."""


@dataclasses.dataclass(frozen=True)
class ConversionOptions:
    """How recordings become episodes (written into every episode's metadata under "conversion")."""

    camera_labels: str = DEFAULT_CAMERA_LABELS
    null_filter: str = DEFAULT_NULL_FILTER
    min_timesteps: int = DEFAULT_MIN_TIMESTEPS
    max_length_mismatch: int = 2  # recorders can end the video and the jsonl a frame apart
    mineclip_batch_size: int = 256
    # How messages name settings: "options" (--min_timesteps) for the command lines, "script" (MIN_TIMESTEPS) when
    # 1_generate_dataset.sh runs the step: its variables are what the user edits. Not written into the metadata.
    setting_names: str = dataclasses.field(default="options", compare=False)

    def __post_init__(self) -> None:
        if self.camera_labels not in CAMERA_LABELS:
            raise ValueError(f"camera_labels must be one of {CAMERA_LABELS}, got {self.camera_labels!r}")
        if self.null_filter not in NULL_FILTERS:
            raise ValueError(f"null_filter must be one of {NULL_FILTERS}, got {self.null_filter!r}")
        if self.setting_names not in SETTING_NAMES:
            raise ValueError(f"setting_names must be one of {SETTING_NAMES}, got {self.setting_names!r}")

    def setting(self, name: str) -> str:
        """How a message names the setting `name` (e.g. "min_timesteps"): MIN_TIMESTEPS or --min_timesteps."""
        return name.upper() if self.setting_names == "script" else f"--{name}"

    def metadata(self) -> dict[str, Any]:
        """The options as every episode's metadata records them (under "conversion")."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "setting_names"}


def add_conversion_arguments(parser: cli.ArgumentParser) -> None:
    """The command-line settings shared by the contractor and custom-data converters and step 1's entrypoint."""
    a = parser.add_argument
    a("--mineclip_weights", default=None, help="MineCLIP attn.pth for the goal embeddings (required unless --demo_random_mineclip)")
    a("--demo_random_mineclip", action="store_true", help="random MineCLIP weights: a pipeline demo only (written into the metadata)")
    a("--mineclip_batch_size", type=cli.positive_int, default=256, help="frames per MineCLIP forward (GPU: 256-1024)")
    a("--device", default=None, choices=["cpu", "cuda"], help="where MineCLIP runs (default: cuda when available; several GPUs are shared round-robin by the jobs)")
    a("--jobs", type=cli.positive_int, default=usable_cores(), help="conversion processes, each decoding, resizing, "
      "embedding and writing whole recordings (default: %(default)s, one per core)")
    a("--min_timesteps", type=cli.non_negative_int, default=DEFAULT_MIN_TIMESTEPS, help="skip recordings with fewer "
      "frames than this after null filtering (step 2 leaves out episodes shorter than its T + 15)")
    a("--camera_labels", default=DEFAULT_CAMERA_LABELS, choices=CAMERA_LABELS,
      help="truncated: whole degrees toward zero, the original's labels (the data steve1.weights learned from); float: fractional degrees (the VPT paper's)")
    a("--null_filter", default=DEFAULT_NULL_FILTER, choices=NULL_FILTERS,
      help="env: drop frames whose env action is null, the original rule; agent: drop frames whose agent action is null (VPT paper); none: keep all")
    a("--max_length_mismatch", type=cli.non_negative_int, default=2, help="tolerate this many frames between video and jsonl lengths (trim to the shorter); more is an error")
    cli.renamed_option(parser, "--batch_size", "--mineclip_batch_size", "it means MineCLIP frames per forward")
    cli.renamed_option(parser, "--truncate_camera", "--camera_labels", "truncation is the default now (--camera_labels truncated)")


def options_from_args(args: argparse.Namespace, setting_names: str = "options") -> ConversionOptions:
    """The conversion options of parsed arguments; `setting_names`: see ConversionOptions.setting_names."""
    return ConversionOptions(args.camera_labels, args.null_filter, args.min_timesteps, args.max_length_mismatch,
                             args.mineclip_batch_size, setting_names)


def check_mineclip_arguments(parser: cli.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (one line, exit 2) a missing MineCLIP file before any work starts."""
    if args.demo_random_mineclip:
        return
    fix = "download attn.pth with download_weights.sh, or pass --demo_random_mineclip for a pipeline demo"
    if not args.mineclip_weights:
        parser.refuse("--mineclip_weights", None, "is required", fix)
    try:
        cli.existing_file("--mineclip_weights", args.mineclip_weights, fix)
    except cli.SettingError as e:
        cli.exit_with_refusal(parser.prog, str(e))


def load_goal_encoder(mineclip_weights: str | None, demo_random_mineclip: bool, device: str,
                      sha256: str | None = None) -> tuple[MineCLIP, dict]:
    """The MineCLIP model for goal embeddings, and what to record about it in the metadata (`source.mineclip`).

    `sha256` of the weights file (computed once by the caller, not per process) identifies the weights: a
    re-run compares it before it skips an existing episode (data.generation.rerun_check).
    """
    if demo_random_mineclip:
        torch.manual_seed(0)
        # Narrow, random, but with the real embedding size: a pipeline demo, never training data.
        config = dataclasses.replace(MineCLIPConfig.tiny(), embed_dim=512)
        model = MineCLIP(config).to(device).eval()
        return model, {"weights": None, "demo_random_weights": True, "config": "tiny, random (demo only)"}
    model = load_mineclip(mineclip_weights, device=device)
    info = {"weights": os.path.abspath(mineclip_weights), "demo_random_weights": False, "config": "attn"}
    return model, {**info, "sha256": sha256} if sha256 else info


class StreamingEmbedder:
    """Per-frame goal embeddings of a frame stream, in chunks that overlap by 15 frames (bounded memory)."""

    def __init__(self, model: MineCLIP, batch_size: int, device: str, chunk: int = EMBED_CHUNK_FRAMES) -> None:
        self.model, self.batch_size, self.device, self.chunk = model, batch_size, device, chunk
        self.buffer: list[np.ndarray] = []
        self.parts: list[np.ndarray] = []
        self.carried = 0  # frames at the buffer's start that were embedded already (context only)

    def add(self, frame: np.ndarray) -> None:
        self.buffer.append(frame)
        if len(self.buffer) >= self.chunk + self.carried:
            self._flush()

    def _flush(self) -> None:
        if len(self.buffer) <= self.carried:
            return
        embeds = embed_frames_sliding(self.model, np.stack(self.buffer), self.batch_size, self.device, progress=False)
        self.parts.append(embeds[self.carried :])
        self.buffer = self.buffer[-(WINDOW - 1) :]
        self.carried = len(self.buffer)

    def finish(self) -> np.ndarray:
        self._flush()
        return np.concatenate(self.parts) if self.parts else np.zeros((0, self.model.config.embed_dim), np.float32)


def agent_and_mineclip_frames(frame: np.ndarray, gui_open: bool, cursor_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A decoded RGB frame of any size -> (agent frame uint8 [128, 128, 3], MineCLIP frame uint8 [160, 256, 3]).

    The frame is brought to 640x360 first (INTER_LINEAR), the cursor drawn at `cursor_xy` (recording
    pixels; NaN: unknown, not drawn) while a GUI is open, then resized as the original does.
    """
    if frame.shape[:2] != (SOURCE_HEIGHT, SOURCE_WIDTH):
        frame = resize_frame(frame, (SOURCE_HEIGHT, SOURCE_WIDTH))
    elif gui_open:
        frame = frame.copy()  # the cursor is drawn in place
    if gui_open and np.all(np.isfinite(cursor_xy)):
        draw_cursor(frame, float(cursor_xy[0]), float(cursor_xy[1]))
    agent = resize_frame(frame, (FRAME_SIZE, FRAME_SIZE))
    mineclip = resize_frame(frame, (MINECLIP_FRAME_HEIGHT, MINECLIP_FRAME_WIDTH))
    return agent, mineclip


def resample_indices(num_source_frames: int, source_fps: float, target_fps: float = FPS) -> np.ndarray:
    """For each output frame at target_fps, the source frame shown at that time (constant frame rate assumed)."""
    duration = num_source_frames / source_fps
    n_out = max(int(np.floor(duration * target_fps + 1e-9)), 0)
    return np.minimum(np.floor(np.arange(n_out) * source_fps / target_fps + 1e-9).astype(np.int64), num_source_frames - 1)


def merge_actions(actions: RecordingActions, indices: np.ndarray, num_source: int) -> RecordingActions:
    """Actions per source frame -> per output frame, output frame k showing source frame indices[k] (non-decreasing).

    Every source frame's action is counted once. A run of r >= 1 consecutive output frames showing source frame
    j stands for source frames j .. (the next frame shown) - 1, so a faster source merges frames and a slower one
    repeats them. Their actions are merged (buttons pressed in any of them, camera moves added up, null only when
    all are null) and shared over the run's r frames: each holds the merged buttons (a key held through 1/10 s
    is held through both 1/20 s steps, as a 20 fps recorder would have recorded it; a hotbar key pressed again
    selects the same slot) and 1/r of the camera move, so the moves of a run add up to the recorded move and a
    move is never counted twice. The camera labelling rule (truncation) applies to these shares afterwards, as
    it would to a 20 fps recording of the same motion.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if not len(indices):  # a recording shorter than one output frame
        return _first_rows(actions, 0)
    run_starts = np.flatnonzero(np.r_[True, indices[1:] != indices[:-1]])  # first output frame of each run
    run_lengths = np.diff(np.append(run_starts, len(indices)))
    bounds = np.append(indices[run_starts], num_source)
    spans = list(zip(bounds[:-1], bounds[1:]))  # the source frames each run stands for (never empty)
    buttons = np.stack([actions.env_buttons[a:b].max(axis=0) for a, b in spans])
    camera = np.stack([actions.env_camera[a:b].sum(axis=0) for a, b in spans]) / run_lengths[:, None]
    env_null = np.array([actions.env_null[a:b].all() for a, b in spans], dtype=bool)
    return RecordingActions(np.repeat(buttons, run_lengths, axis=0), np.repeat(camera, run_lengths, axis=0),
                            np.repeat(env_null, run_lengths), actions.gui_open[indices], actions.cursor_xy[indices],
                            actions.file_format)


def _first_rows(actions: RecordingActions, n: int) -> RecordingActions:
    return dataclasses.replace(actions, **{f.name: getattr(actions, f.name)[:n] for f in dataclasses.fields(actions)
                                           if isinstance(getattr(actions, f.name), np.ndarray)})


def align_to_video(actions: RecordingActions, n_video: int, fps: float, max_length_mismatch: int,
                   video_path: Path, setting: str = "--max_length_mismatch") -> tuple[RecordingActions, np.ndarray]:
    """(actions per output frame, the source frame each output frame shows), resampled to 20 fps when needed.

    Raises ConversionError for an unusable frame rate or a length mismatch beyond `max_length_mismatch`.
    """
    if not MIN_SOURCE_FPS <= fps <= MAX_SOURCE_FPS:
        raise ConversionError(f"{video_path}: {fps:g} fps is outside {MIN_SOURCE_FPS:g}..{MAX_SOURCE_FPS:g} "
                              "(a broken header?); re-encode it at its real frame rate")
    if n_video == 0:
        raise ConversionError(f"{video_path}: the video has no frames")
    if abs(n_video - len(actions)) > max_length_mismatch:
        raise ConversionError(
            f"{video_path}: {n_video} video frames but {len(actions)} action lines "
            f"({setting} {max_length_mismatch} allows trimming small differences)"
        )
    n = min(n_video, len(actions))
    actions = _first_rows(actions, n)
    if abs(fps - FPS) <= FPS_TOLERANCE:
        return actions, np.arange(n)
    indices = resample_indices(n, fps, FPS)
    return merge_actions(actions, indices, n), indices


def convert_recording(
    video_path: str | os.PathLike,
    actions: RecordingActions,
    out_dir: str | os.PathLike,
    goal_encoder: MineCLIP,
    options: ConversionOptions,
    source: dict[str, Any],
    device: str = "cpu",
    progress: bool = True,
    decoder_threads: int = SEQUENTIAL_THREADS,
    frame_indices: np.ndarray | None = None,
) -> tuple[Path | None, str]:
    """Write one episode; returns (episode dir, message) or (None, why it was skipped).

    `actions` hold one row per video frame (aligned and resampled here), or, with `frame_indices`, one row
    per 20 fps output frame already, output frame k showing video frame frame_indices[k] (IDM labels).

    Raises ConversionError (unusable frame rate, lengths, corrupt or truncated video, an episode at `out_dir`)
    naming the file;
    VideoError (a ConversionError's sibling, both ValueError) when the video cannot be opened.
    """
    from tqdm import tqdm

    video_path = Path(video_path)
    with VideoReader(video_path) as reader:
        n_video, fps, height, width = reader.num_frames, reader.fps, reader.height, reader.width
    if frame_indices is None:
        actions, frame_indices = align_to_video(actions, n_video, fps, options.max_length_mismatch, video_path,
                                                options.setting("max_length_mismatch"))
    elif len(frame_indices) != len(actions) or not len(frame_indices) or frame_indices.max() >= n_video:
        raise ConversionError(f"{video_path}: {len(actions)} labelled frames for {len(frame_indices)} frame indices "
                              f"into a video of {n_video} frames")
    camera = label_camera(actions.env_camera, options.camera_labels)
    keep = keep_mask(actions.env_buttons, camera, actions.env_null, options.null_filter)
    kept = int(keep.sum())
    if kept < max(options.min_timesteps, EMBED_START + 1):
        minimum = f"{options.setting('min_timesteps')} {options.min_timesteps}"
        return None, f"{kept} frames after null filtering, fewer than {minimum}"

    embedder = StreamingEmbedder(goal_encoder, options.mineclip_batch_size, device)
    conversion = {**options.metadata(), "actions_format": actions.file_format, "source_fps": fps,
                  "source_size": [height, width], "source_frames": n_video, "output_frames": len(frame_indices),
                  "kept_frames": kept}
    lines_for_frame: dict[int, list[int]] = {}
    for line, frame_index in enumerate(frame_indices):
        if keep[line]:
            lines_for_frame.setdefault(int(frame_index), []).append(line)
    last_frame = int(frame_indices[-1])
    try:
        with EpisodeWriter(out_dir, source=source, conversion=conversion) as writer:
            bar = tqdm(total=last_frame + 1, unit="frame", desc=Path(out_dir).name[:40], disable=not progress, leave=False)
            try:
                for index, frame in enumerate(read_video_frames(video_path, threads=decoder_threads)):
                    bar.update(1)
                    for line in lines_for_frame.get(index, ()):
                        agent_frame, mineclip_frame = agent_and_mineclip_frames(frame, actions.gui_open[line],
                                                                                actions.cursor_xy[line])
                        writer.append_frame(agent_frame)
                        embedder.add(mineclip_frame)
                    if index >= last_frame:
                        break
            except ValueError as e:  # VideoError: corrupt or truncated video
                raise ConversionError(str(e)) from None
            finally:
                bar.close()
            if writer.num_frames != kept:
                raise ConversionError(f"{video_path}: decoded {writer.num_frames} of the {kept} frames the actions need")
            writer.append_actions(actions.env_buttons[keep], camera[keep])
            confidence = getattr(actions, "idm_confidence", None)  # idm_labelling.LabelledActions
            if confidence is not None:
                writer.set_idm_confidence(confidence[keep])
            writer.set_embeds(embedder.finish())
    except EpisodeExistsError:
        # Only another process can have written it (this run skips existing episodes, and holds the directory's
        # lock): keep that episode, discard this conversion.
        raise ConversionError(f"{out_dir}: an episode of this name was written by another process while this recording "
                              "converted; it is kept as it is and this conversion discarded: delete it and re-run to "
                              "convert this recording again") from None
    return Path(out_dir), f"{kept} frames"
