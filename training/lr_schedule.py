"""Learning rate as a function of frames processed: linear warmup, then cosine to 0 at 1.1 x n_frames."""

from __future__ import annotations

import math

COSINE_END_FACTOR = 1.1  # the original decays to 0 at 1.1 * n_frames, so training ends at a small nonzero LR


def learning_rate_at(frames: int, learning_rate: float, warmup_frames: int, n_frames: int) -> float:
    """The STEVE-1 schedule: lr * frames / warmup during warmup, then half-cosine down to 0."""
    if frames < warmup_frames:
        return learning_rate * frames / warmup_frames
    end = COSINE_END_FACTOR * n_frames
    if frames >= end:
        return 0.0
    progress = (frames - warmup_frames) / max(end - warmup_frames, 1)
    return learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))
