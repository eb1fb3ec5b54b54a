"""The one frame resize the toolkit uses for what the policy, the IDM and MineCLIP see: cv2 INTER_LINEAR.

VPT's agent resizes each MineRL observation to 128x128 with `cv2.resize(..., interpolation=cv2.INTER_LINEAR)`
(openai/Video-Pre-Training, agent.py `resize_image`); STEVE-1 does the same for its training frames and for
MineCLIP's 256x160 input. Using one function keeps training, labelling and acting pixel-identical.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 frame [H, W, 3] -> [size[0], size[1], 3] with INTER_LINEAR; returned as is when already that size.

    Raises ValueError for anything but an RGB uint8 frame.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
    if frame.shape[:2] == size:
        return frame
    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
