"""Test helper: start writing an episode with EpisodeWriter and keep going until killed.

Run by tests/test_episode_storage.py as `python episode_writer_child.py FINAL_DIR`; prints
"writing" once frames are streaming so the test knows when to send SIGKILL.
"""

import sys

import numpy as np

from data.episode import FRAME_SIZE, EpisodeWriter

# Frames written before announcing: past x264's lookahead and the muxer's buffer, so that
# frames.mp4 already holds data on disk when the test kills this process.
STARTED_AFTER = 100
MAX_FRAMES = 1_000_000  # far more than the test waits for: the process never finishes on its own


def main(final_dir: str) -> None:
    """Stream frames and actions into an EpisodeWriter that is never closed."""
    writer = EpisodeWriter(final_dir)
    noise = np.random.default_rng(0).integers(0, 256, (FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    for i in range(MAX_FRAMES):
        writer.append_frame(np.roll(noise, i, axis=1))
        writer.append_action({"forward": 1, "camera": [0.0, 1.0]})
        if i == STARTED_AFTER:
            print("writing", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
