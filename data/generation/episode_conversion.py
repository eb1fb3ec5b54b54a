"""One recording (video + per-frame actions) -> one episode directory.

For each kept frame: draw the GUI cursor when a GUI is open, resize to 128x128 for the agent and to
256x160 for MineCLIP (cv2 INTER_LINEAR both), and store the action; the MineCLIP goal embedding of
every frame is computed from the 16 frames ending at it. Frames whose action is null are dropped
(the video is still decoded in step), by default when the AGENT action is null (joint buttons 0 and
camera 60, as the VPT paper describes); `null_filter="env"` reproduces the original STEVE-1 rule.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from data.EpisodeStorage import EMBED_START, FPS, FRAME_SIZE, EpisodeWriter
from data.generation.contractor_actions import ContractorActions
from data.generation.cursor import draw_cursor
from data.video_io import VideoReader, read_video_frames
from mineclip_model.embedding import WINDOW, embed_frames_sliding
from mineclip_model.image_encoder import MINECLIP_FRAME_HEIGHT, MINECLIP_FRAME_WIDTH
from mineclip_model.mineclip import MineCLIP, MineCLIPConfig, load_mineclip

EMBED_CHUNK_FRAMES = 2048  # MineCLIP frames held in memory at once (~250 MB); long videos are embedded in chunks
NULL_FILTERS = ("agent", "env", "none")


class ConversionError(ValueError):
    """This recording cannot be converted; the message names the file and the reason."""


@dataclasses.dataclass(frozen=True)
class ConversionOptions:
    """How recordings become episodes (written into every episode's metadata)."""

    null_filter: str = "agent"
    truncate_camera: bool = False
    min_timesteps: int = 1000
    max_length_mismatch: int = 2  # recorders can end the video and the jsonl a frame apart
    embed_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.null_filter not in NULL_FILTERS:
            raise ValueError(f"null_filter must be one of {NULL_FILTERS}, got {self.null_filter!r}")


def add_conversion_arguments(parser: argparse.ArgumentParser, min_timesteps: int) -> None:
    """The command-line settings shared by the contractor and custom-data converters."""
    a = parser.add_argument
    a("--mineclip_weights", default=None, help="MineCLIP attn.pth for the goal embeddings (required)")
    a("--demo_random_mineclip", action="store_true", help="random MineCLIP weights: a pipeline demo only (written into the metadata)")
    a("--batch_size", type=int, default=256, help="frames per MineCLIP forward")
    a("--device", default=None, help="cuda or cpu for MineCLIP (default: cuda when available)")
    a("--min_timesteps", type=int, default=min_timesteps, help="skip recordings with fewer frames than this after null filtering")
    a("--null_filter", default="agent", choices=NULL_FILTERS, help="agent: drop frames whose agent action is null (VPT paper); env: the original STEVE-1 rule; none: keep all")
    a("--truncate_camera", action="store_true", help="contractor-format actions: reproduce the original's whole-degree camera truncation (a bug; off by default)")
    a("--max_length_mismatch", type=int, default=2, help="tolerate this many frames between video and jsonl lengths (trim to the shorter); more is an error")


def options_from_args(args: argparse.Namespace) -> ConversionOptions:
    return ConversionOptions(args.null_filter, args.truncate_camera, args.min_timesteps, args.max_length_mismatch, args.batch_size)


def load_goal_encoder(mineclip_weights: str | None, demo_random_mineclip: bool, device: str) -> tuple[MineCLIP, dict]:
    """The MineCLIP model for goal embeddings, and what to record about it in the metadata."""
    if demo_random_mineclip:
        torch.manual_seed(0)
        # Narrow, random, but with the real embedding size: a pipeline demo, never training data.
        config = dataclasses.replace(MineCLIPConfig.tiny(), embed_dim=512)
        model = MineCLIP(config).to(device).eval()
        return model, {"weights": None, "demo_random_weights": True, "config": "tiny, random (demo only)"}
    if not mineclip_weights:
        raise SystemExit("--mineclip_weights is required (data/weights/mineclip/attn.pth from download_weights.sh); "
                         "--demo_random_mineclip uses random weights for a pipeline demo only")
    model = load_mineclip(mineclip_weights, device=device)
    return model, {"weights": os.path.abspath(mineclip_weights), "demo_random_weights": False, "config": "attn"}


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


def keep_mask(actions: ContractorActions, null_filter: str) -> np.ndarray:
    """Which frames to keep: all, or those whose action is not null under the chosen rule."""
    if null_filter == "agent":
        return ~actions.agent_null
    if null_filter == "env":
        return ~actions.env_null
    return np.ones(len(actions), dtype=bool)


def convert_recording(
    video_path: str | os.PathLike,
    actions: ContractorActions,
    out_dir: str | os.PathLike,
    goal_encoder: MineCLIP,
    options: ConversionOptions,
    source: dict[str, Any],
    device: str = "cpu",
    frame_indices: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[Path | None, str]:
    """Write one episode; returns (episode dir, message) or (None, why it was skipped). Raises ConversionError.

    `frame_indices` maps each action line to a video frame (resampled custom recordings); by default line
    i belongs to frame i.
    """
    from tqdm import tqdm

    video_path = Path(video_path)
    try:
        n_video = VideoReader(video_path).num_frames
    except (OSError, ValueError) as e:
        raise ConversionError(str(e)) from None
    n_lines = len(actions)
    if frame_indices is None:
        if abs(n_video - n_lines) > options.max_length_mismatch:
            raise ConversionError(
                f"{video_path}: {n_video} video frames but {n_lines} action lines "
                f"(--max_length_mismatch {options.max_length_mismatch} allows trimming small differences)"
            )
        frame_indices = np.arange(min(n_video, n_lines))
    elif len(frame_indices) and frame_indices.max() >= n_video:
        raise ConversionError(f"{video_path}: actions refer to frame {frame_indices.max()}, the video has {n_video}")
    actions = dataclasses.replace(
        actions, **{f.name: getattr(actions, f.name)[: len(frame_indices)] for f in dataclasses.fields(actions)}
    )
    keep = keep_mask(actions, options.null_filter)
    kept = int(keep.sum())
    if kept < max(options.min_timesteps, EMBED_START + 1):
        return None, f"{kept} frames after null filtering, fewer than --min_timesteps {options.min_timesteps}"

    embedder = StreamingEmbedder(goal_encoder, options.embed_batch_size, device)
    conversion = {**dataclasses.asdict(options), "source_frames": n_video, "action_lines": n_lines, "kept_frames": kept}
    lines_for_frame: dict[int, list[int]] = {}
    for line, frame_index in enumerate(frame_indices):
        if keep[line]:
            lines_for_frame.setdefault(int(frame_index), []).append(line)
    with EpisodeWriter(out_dir, source=source, conversion=conversion) as writer:
        bar = tqdm(total=n_video, unit="frame", desc=Path(out_dir).name[:40], disable=not progress, leave=False)
        try:
            for index, frame in enumerate(read_video_frames(video_path)):
                bar.update(1)
                for line in lines_for_frame.get(index, ()):
                    image = frame
                    if actions.gui_open[line]:
                        image = frame.copy()
                        draw_cursor(image, *actions.cursor_xy[line])
                    writer.append_frame(cv2.resize(image, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_LINEAR))
                    embedder.add(cv2.resize(image, (MINECLIP_FRAME_WIDTH, MINECLIP_FRAME_HEIGHT), interpolation=cv2.INTER_LINEAR))
                if index >= frame_indices[-1]:
                    break
        except ValueError as e:  # VideoError: corrupt or truncated video
            raise ConversionError(str(e)) from None
        finally:
            bar.close()
        if writer.num_frames != kept:
            raise ConversionError(f"{video_path}: decoded {writer.num_frames} of the {kept} frames the actions need")
        writer.append_actions(actions.env_buttons[keep], actions.env_camera[keep])
        confidence = getattr(actions, "idm_confidence", None)  # actions labelled by the IDM (idm_labelling.LabelledActions)
        if confidence is not None:
            writer.set_idm_confidence(confidence[keep])
        writer.set_embeds(embedder.finish())
    return Path(out_dir), f"{kept} frames"


def resample_indices(num_source_frames: int, source_fps: float, target_fps: float = FPS) -> np.ndarray:
    """For each output frame at target_fps, the source frame shown at that time (constant frame rate assumed)."""
    duration = num_source_frames / source_fps
    n_out = max(int(np.floor(duration * target_fps + 1e-9)), 0)
    return np.minimum(np.floor(np.arange(n_out) * source_fps / target_fps + 1e-9).astype(np.int64), num_source_frames - 1)
