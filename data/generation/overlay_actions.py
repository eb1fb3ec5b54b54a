r"""Check action labels by eye: draw each frame's action on the frame and write a short mp4.

    # an episode (recorded actions, or IDM labels with their confidence): its 128x128 frames, shown at 512x512
    .venv/bin/python -m data.generation.overlay_actions --episode data/dataset_custom/episode_001 --output check.mp4
    # a raw recording, labelled by the IDM on the fly (nothing is written but the mp4)
    .venv/bin/python -m data.generation.overlay_actions --video my_recordings/episode_001/video.mp4 \
        --idm_model data/weights/vpt/4x_idm.model --idm_weights data/weights/vpt/4x_idm.weights --output check.mp4

Each frame shows the buttons pressed, the camera move (degrees, and an arrow from the centre: right = yaw,
down = pitch) and, for IDM labels, the lowest confidence among the 22 outputs and which output it is. With
--video the clip is rounded down to whole IDM chunks of 128 frames (6.4 s), so its labels are the ones step 1
gives those frames.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from data.episode import FPS, EpisodeFormatError, load_episode
from data.generation import idm_labelling
from data.generation.episode_conversion import resample_indices
from data.video_io import VideoReader, VideoWriter, read_video_frames
from MineRLConditionalAgent import resize_frame
from toolkit_utils import cli
from vpt_model.action_space import ENV_BUTTONS
from vpt_model.inverse_dynamics import CONFIDENCE_NAMES

EPISODE_SCALE = 4  # 128x128 episode frames are drawn at 512x512 so the text stays readable
VIDEO_SIZE = (360, 640)  # (height, width) raw recordings are drawn at: what the agent sees in MineRL
ARROW_PIXELS_PER_DEGREE = 8.0


def draw_action(frame: np.ndarray, index: int, buttons: np.ndarray, camera: np.ndarray,
                confidence: np.ndarray | None = None) -> np.ndarray:
    """A copy of an RGB frame with one frame's action written on it.

    buttons: (23,) 0/1 in ENV_BUTTONS order; camera: (pitch, yaw) degrees; confidence: (22,) in
    CONFIDENCE_NAMES order, or None for recorded actions.
    """
    out = np.ascontiguousarray(frame).copy()
    height, width = out.shape[:2]
    pressed = [name for name, on in zip(ENV_BUTTONS, buttons) if on]
    lines = [f"frame {index}", "buttons: " + (" ".join(pressed) if pressed else "-"),
             f"camera: pitch {camera[0]:+.2f} yaw {camera[1]:+.2f}"]
    if confidence is not None:
        worst = int(np.argmin(confidence))
        lines.append(f"IDM confidence: min {confidence[worst]:.2f} ({CONFIDENCE_NAMES[worst]})")
    for row, text in enumerate(lines):
        origin = (8, 20 + 18 * row)
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)  # outline: readable anywhere
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    centre = (width // 2, height // 2)
    tip = (int(round(centre[0] + camera[1] * ARROW_PIXELS_PER_DEGREE)), int(round(centre[1] + camera[0] * ARROW_PIXELS_PER_DEGREE)))
    if tip != centre:
        cv2.arrowedLine(out, centre, tip, (255, 220, 0), 2, cv2.LINE_AA, tipLength=0.25)
    return out


def overlay_episode(episode_dir: str | Path, output: str | Path, start: int, num_frames: int) -> int:
    """Write frames [start, start + num_frames) of an episode with their stored actions; returns frames written."""
    with load_episode(episode_dir) as episode:
        stop = min(start + num_frames, episode.num_frames)
        if start >= stop:
            raise ValueError(f"{episode_dir}: --start {start} is past the episode's {episode.num_frames} frames")
        frames = episode.read_frames(start, stop)
        with VideoWriter(output, fps=FPS) as writer:
            for i, frame in enumerate(tqdm(frames, desc="overlay", unit="frame", leave=False)):
                k = start + i
                big = cv2.resize(frame, None, fx=EPISODE_SCALE, fy=EPISODE_SCALE, interpolation=cv2.INTER_NEAREST)
                confidence = None if episode.idm_confidence is None else episode.idm_confidence[k]
                writer.write(draw_action(big, k, episode.env_buttons[k], episode.env_camera[k], confidence))
    return stop - start


def overlay_video(video: str | Path, output: str | Path, labeller: idm_labelling.IDMLabeller, num_frames: int) -> int:
    """Label the first 20 fps frames of a raw recording with the IDM and write them with their labels.

    num_frames is rounded down to whole IDM chunks, so the labels are the ones step 1 gives these frames.
    """
    with VideoReader(video) as reader:
        fps, n_video = reader.fps, reader.num_frames
    num_frames = max(num_frames // labeller.chunk, 1) * labeller.chunk
    indices = resample_indices(n_video, fps, FPS)[:num_frames]
    labels = labeller.label_frames(idm_labelling.idm_input_frames(video, indices), name=str(video))
    written = 0
    wanted = {}
    for k, index in enumerate(indices.tolist()):
        wanted.setdefault(index, []).append(k)
    with VideoWriter(output, fps=FPS) as writer:
        for index, frame in enumerate(read_video_frames(video)):
            for k in wanted.get(index, ()):
                shown = resize_frame(frame, VIDEO_SIZE)
                writer.write(draw_action(shown, k, labels.env_buttons[k], labels.env_camera[k], labels.confidence[k]))
                written += 1
            if index >= indices[-1]:
                break
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--episode", help="an episode directory: draw its stored actions (recorded or IDM labels)")
    source.add_argument("--video", help="a raw recording (video.mp4): label it with the IDM and draw the labels")
    parser.add_argument("--output", required=True, help="the mp4 to write (h264, 20 fps)")
    parser.add_argument("--seconds", type=cli.float_range(0.0, low_open=True), default=20.0, help="length of the clip")
    parser.add_argument("--start", type=cli.int_range(0), default=0, help="--episode: first frame to draw")
    parser.add_argument("--idm_model", default=None, help="--video: VPT's 4x_idm.model")
    parser.add_argument("--idm_weights", default=None, help="--video: VPT's 4x_idm.weights")
    parser.add_argument("--idm_dtype", choices=sorted(idm_labelling.DTYPES), default="fp32", help="--video: IDM precision")
    parser.add_argument("--device", default=None, help="--video: cuda or cpu for the IDM (default: cuda when available)")
    args = parser.parse_args(argv)
    num_frames = max(int(round(args.seconds * FPS)), 1)
    if Path(args.output).suffix != ".mp4":
        parser.refuse("--output", args.output, "must end in .mp4", "e.g. --output check.mp4")

    def run() -> int:
        if args.episode:
            cli.existing_dir("--episode", args.episode)
            try:
                written = overlay_episode(args.episode, args.output, args.start, num_frames)
            except (EpisodeFormatError, ValueError) as error:
                cli.refuse("--episode", args.episode, idm_labelling.without_path(error, args.episode))
        else:
            cli.existing_file("--video", args.video)
            if not (args.idm_model and args.idm_weights):
                cli.refuse("--video", args.video, "labelling needs --idm_model and --idm_weights", "pass both (download_weights.sh)")
            if num_frames < idm_labelling.DEFAULT_CHUNK:
                cli.refuse("--seconds", args.seconds, f"the IDM labels chunks of {idm_labelling.DEFAULT_CHUNK} frames",
                           f"use at least {idm_labelling.DEFAULT_CHUNK / FPS:g} seconds")
            import torch

            device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
            labeller = idm_labelling.load_labeller(args.idm_model, args.idm_weights, device, args.idm_dtype)
            try:
                written = overlay_video(args.video, args.output, labeller, num_frames)
            except ValueError as error:
                cli.refuse("--video", args.video, idm_labelling.without_path(error, args.video))
        print(f"{args.output}: {written} frames with their actions")
        return 0

    return cli.run_main(parser.prog, run)


if __name__ == "__main__":
    sys.exit(main())
