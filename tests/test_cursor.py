"""The GUI cursor: the same pixels as the original's compositing, at 640x360 and after the resizes.

The original (VPT data_loader.py `composite_images_with_alpha`, copied into STEVE-1's contractor.py) reads
VPT's cursors/mouse_cursor_white_16x16.png, crops it to 16x16, takes alpha = A / 255.0 and writes
uint8(frame * (1 - alpha) + cursor * alpha) at (int(x * h / 720), int(y * h / 720)), cutting the cursor
off at the right and bottom edges, before the BGR->RGB conversion and the resizes. The expected values
below follow that arithmetic pixel by pixel; no original code is used.
"""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from data.generation import episode_conversion
from data.generation.contractor_actions import load_actions_file
from data.generation.cursor import cursor_position, cursor_rgba, draw_cursor
from data.video_io import VideoWriter, read_video_frames

# sha256 of the top-left 16x16 crop of VPT's cursors/mouse_cursor_white_16x16.png as RGBA bytes (row-major,
# R G B A per pixel), computed from that file (github.com/openai/Video-Pre-Training; STEVE-1 ships the same file).
VPT_CURSOR_CROP_SHA256 = "9fbb5cf2060c3e25e6eebc927ca6d4d5e4639dacc54a26b036066ead73a63d58"


def original_composite(frame: np.ndarray, x: float, y: float) -> np.ndarray:
    """The original's compositing written out per pixel (frame RGB; the cursor is grey, so BGR is the same)."""
    scale = frame.shape[0] / 720
    return composite_at(frame, int(x * scale), int(y * scale))


def composite_at(frame: np.ndarray, cx: int, cy: int) -> np.ndarray:
    """The cursor's pixels that fall inside the frame, composited with the original's arithmetic."""
    out = frame.copy()
    rgba = cursor_rgba()
    height, width = frame.shape[:2]
    for i in range(16):
        for j in range(16):
            row, col = cy + i, cx + j
            if 0 <= row < height and 0 <= col < width:
                alpha = int(rgba[i, j, 3]) / 255.0
                for k in range(3):
                    out[row, col, k] = int(int(frame[row, col, k]) * (1 - alpha) + int(rgba[i, j, k]) * alpha)
    return out


def test_cursor_is_the_crop_of_vpts_png():
    rgba = cursor_rgba()
    assert rgba.shape == (16, 16, 4) and rgba.dtype == np.uint8
    assert hashlib.sha256(rgba.tobytes()).hexdigest() == VPT_CURSOR_CROP_SHA256
    # a white arrow with a dark outline, opaque, and a few faint stray pixels beside it
    assert rgba[0, 0].tolist() == [0, 0, 0, 255] and rgba[5, 2].tolist() == [255, 255, 255, 255]
    assert rgba[0, 10].tolist() == [238, 238, 238, 1] and rgba[13, 1].tolist() == [0, 0, 0, 205]
    assert int((rgba[:, :, 3] == 255).sum()) == 93 and int((rgba[:, :, 3] > 0).sum()) == 111
    with pytest.raises(ValueError):
        rgba[0, 0, 0] = 1  # shared by every call: read-only


@pytest.mark.parametrize(
    "x, y",
    [
        (200.75, 100.4),  # inside: top-left pixel (100, 50)
        (3.9, 1.1),  # int() truncates: (1, 0)
        (1270.0, 300.0),  # 5 columns left before the right edge
        (600.0, 705.5),  # 8 rows left before the bottom edge
        (1279.9, 719.9),  # one pixel in the corner
        (1280.0, 100.0),  # just past the right edge: nothing drawn
        (900.0, 2000.0),  # far below: nothing drawn
    ],
)
def test_compositing_equals_the_original_to_the_last_pixel(x, y):
    frame = np.random.default_rng(int(x * 10 + y)).integers(0, 256, size=(360, 640, 3), dtype=np.uint8)
    expected = original_composite(frame, x, y)
    drawn = frame.copy()
    draw_cursor(drawn, x, y)
    np.testing.assert_array_equal(drawn, expected)
    cx, cy = cursor_position(x, y, 360)
    assert (cx, cy) == (int(x / 2), int(y / 2))
    if cx < 640 and cy < 360:
        assert not np.array_equal(drawn, frame)  # the cases above do draw something


def test_every_frame_value_under_every_cursor_pixel():
    """Exhaustive over (cursor pixel, frame value 0..255): float64 alpha and truncation, as the original."""
    for value in range(256):
        frame = np.full((16, 16, 3), value, np.uint8)
        drawn = frame.copy()
        draw_cursor(drawn, 0, 0)
        np.testing.assert_array_equal(drawn, composite_at(frame, 0, 0), err_msg=f"frame value {value}")


def test_position_above_or_left_of_the_frame_draws_the_part_inside():
    """The original fails there (a numpy broadcast error); this draws what would be visible."""
    frame = np.random.default_rng(1).integers(0, 256, size=(360, 640, 3), dtype=np.uint8)
    drawn = frame.copy()
    draw_cursor(drawn, -6.0, -10.0)  # top-left pixel (-3, -5)
    np.testing.assert_array_equal(drawn, composite_at(frame, -3, -5))
    assert not np.array_equal(drawn, frame)


def test_conversion_composites_on_the_640x360_frame_before_both_resizes(tmp_path, monkeypatch):
    """A GUI recording through convert_recording: the agent (128x128) and MineCLIP (256x160) frames equal the
    original compositing of the decoded 640x360 frame, then cv2 INTER_LINEAR resizes."""
    n = 18
    rng = np.random.default_rng(0)
    video = tmp_path / "rec.mp4"
    with VideoWriter(video, fps=20) as writer:
        for _ in range(n):
            writer.write(rng.integers(0, 256, size=(360, 640, 3), dtype=np.uint8))
    cursors = [(float(rng.uniform(0, 1300)), float(rng.uniform(0, 740))) for _ in range(n)]
    lines = [{"mouse": {"x": x, "y": y, "dx": 0, "dy": 0, "buttons": [], "newButtons": [], "dwheel": 0},
              "keyboard": {"keys": ["key.keyboard.w"], "newKeys": []}, "isGuiOpen": True, "hotbar": 0}
             for x, y in cursors]
    jsonl = tmp_path / "rec.jsonl"
    jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))

    agent_frames, mineclip_frames = [], []
    append_frame, add = episode_conversion.EpisodeWriter.append_frame, episode_conversion.StreamingEmbedder.add
    monkeypatch.setattr(episode_conversion.EpisodeWriter, "append_frame",
                        lambda self, frame: (agent_frames.append(frame.copy()), append_frame(self, frame)))
    monkeypatch.setattr(episode_conversion.StreamingEmbedder, "add",
                        lambda self, frame: (mineclip_frames.append(frame.copy()), add(self, frame)))
    encoder, _ = episode_conversion.load_goal_encoder(None, demo_random_mineclip=True, device="cpu")
    episode, _ = episode_conversion.convert_recording(
        video, load_actions_file(jsonl), tmp_path / "episode", encoder,
        episode_conversion.ConversionOptions(min_timesteps=16), source={}, progress=False,
    )
    assert episode is not None and len(agent_frames) == len(mineclip_frames) == n
    for i, (decoded, (x, y)) in enumerate(zip(read_video_frames(video), cursors)):
        expected = original_composite(decoded, x, y)
        np.testing.assert_array_equal(agent_frames[i], cv2.resize(expected, (128, 128), interpolation=cv2.INTER_LINEAR))
        np.testing.assert_array_equal(mineclip_frames[i], cv2.resize(expected, (256, 160), interpolation=cv2.INTER_LINEAR))
