"""Text on video frames (OpenCV's Hershey font): the prompt over a rollout, labels above side-by-side videos.

The Hershey fonts draw ASCII only; other characters come out as '?'.
"""

from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_SCALE = 0.3


def _fit(text: str, max_width: int, text_height: int) -> tuple[str, float, int]:
    """(text, font scale, thickness) so the text is about `text_height` px high and at most `max_width` wide.

    Text too long at the smallest scale is cut and ends in '...'.
    """
    thickness = max(1, text_height // 12)
    scale = max(MIN_SCALE, cv2.getFontScaleFromHeight(FONT, text_height, thickness))
    width = cv2.getTextSize(text, FONT, scale, thickness)[0][0]
    if width > max_width:
        scale = max(MIN_SCALE, scale * max_width / width)
    while len(text) > 1 and cv2.getTextSize(text, FONT, scale, thickness)[0][0] > max_width:
        text = text[: max(1, len(text) - 4)] + "..."
    return text, scale, thickness


def caption_band(width: int, height: int, text: str) -> np.ndarray:
    """A black RGB uint8 band (height, width, 3) with `text` centred in white."""
    band = np.zeros((height, width, 3), dtype=np.uint8)
    margin = max(2, height // 8)
    text, scale, thickness = _fit(text, width - 2 * margin, height - 2 * margin)
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    origin = ((width - text_width) // 2, (height + text_height) // 2 - baseline // 2)
    cv2.putText(band, text, origin, FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return band


def overlay_caption(frame: np.ndarray, text: str) -> np.ndarray:
    """A copy of an RGB frame with `text` in white with a dark outline at its top left (~1/18 of its height)."""
    out = np.ascontiguousarray(frame).copy()
    height, width = out.shape[:2]
    margin = max(2, height // 60)
    text, scale, thickness = _fit(text, width - 2 * margin, max(8, height // 18))
    text_height = cv2.getTextSize(text, FONT, scale, thickness)[0][1]
    origin = (margin, margin + text_height)
    cv2.putText(out, text, origin, FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(out, text, origin, FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
