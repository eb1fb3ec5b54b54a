"""Test helper: generated episodes whose frames and embeddings say which frame they are.

- Frames (`index_frames`): four horizontal grey bands of 32 rows; band k holds hex digit k of the
  frame index as the level 16 * digit + 8. Bands line up with h264's 16x16 macroblocks and grey has
  neutral chroma, so CRF 12 keeps each level within a few units of its 16-wide slot and
  `frame_index` recovers the index exactly (up to 65,535 frames).
- Embeddings (`index_embeds`): rows 0..14 NaN (no full MineCLIP window yet), row i = i plus noise
  below 0.01, so `embed_index` gives back the frame a goal embedding came from.
- Actions (`random_actions`): random env buttons and camera angles.

`make_episode` writes one episode through EpisodeWriter (our format); `write_legacy_episode` writes
one exactly as the original STEVE-1 did (mp4v, pickles, len.txt).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np

from data.episode import EMBED_DIM, EMBED_START, FRAME_SIZE, FRAMES_FILE, METADATA_FILE, EpisodeWriter
from vpt_model.action_space import ENV_BUTTONS

N_BANDS = 4
BAND_ROWS = FRAME_SIZE // N_BANDS  # 32
LEVEL_STEP = 16  # grey levels of neighbouring digits differ by this much
MAX_INDEX = LEVEL_STEP**N_BANDS - 1


def index_frames(indices: np.ndarray | range) -> np.ndarray:
    """RGB uint8 [n, 128, 128, 3] frames; frame j encodes indices[j] (see the module docstring)."""
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() > MAX_INDEX):
        raise ValueError(f"frame indices must lie in 0..{MAX_INDEX}")
    frames = np.empty((len(indices), FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    for band in range(N_BANDS):
        digit = (indices // LEVEL_STEP**band) % LEVEL_STEP
        level = (digit * LEVEL_STEP + LEVEL_STEP // 2).astype(np.uint8)
        frames[:, band * BAND_ROWS:(band + 1) * BAND_ROWS] = level[:, None, None, None]
    return frames


def frame_index(frame: np.ndarray) -> int:
    """The index an `index_frames` frame encodes, read back from a decoded (lossy) frame."""
    index = 0
    for band in range(N_BANDS):
        centre = frame[band * BAND_ROWS + 4:(band + 1) * BAND_ROWS - 4, 8:-8].astype(np.float64)
        digit = int(np.clip(np.round((np.median(centre) - LEVEL_STEP // 2) / LEVEL_STEP), 0, LEVEL_STEP - 1))
        index += digit * LEVEL_STEP**band
    return index


def frame_indices(frames: np.ndarray) -> np.ndarray:
    """`frame_index` of every frame of [n, H, W, 3]."""
    return np.array([frame_index(frame) for frame in frames], dtype=np.int64)


def index_embeds(num_frames: int, seed: int = 0) -> np.ndarray:
    """float32 [num_frames, 512]: NaN rows before EMBED_START, row i = i + noise in (-0.01, 0.01)."""
    rng = np.random.default_rng(seed)
    embeds = np.arange(num_frames, dtype=np.float32)[:, None] + rng.uniform(-0.01, 0.01, (num_frames, EMBED_DIM))
    embeds = embeds.astype(np.float32)
    embeds[:EMBED_START] = np.nan
    return embeds


def embed_index(embeds: np.ndarray) -> np.ndarray:
    """The frame index each `index_embeds` row (or rows of [..., 512]) came from."""
    return np.round(np.asarray(embeds, dtype=np.float64).mean(axis=-1)).astype(np.int64)


def random_actions(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random env buttons (0/1, all 23) and camera angles (degrees, beyond the +-10 clip too)."""
    rng = np.random.default_rng(seed)
    buttons = (rng.random((n, len(ENV_BUTTONS))) < 0.2).astype(np.uint8)
    camera = rng.uniform(-15, 15, (n, 2)).astype(np.float32)
    camera[rng.random(n) < 0.3] = 0.0
    return buttons, camera


def moving_frames(n: int, seed: int = 0) -> np.ndarray:
    """Colour gradients that drift at different speeds, a little texture and a moving yellow block."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:FRAME_SIZE, 0:FRAME_SIZE]
    texture = rng.integers(-12, 13, (FRAME_SIZE, FRAME_SIZE, 1))
    frames = np.empty((n, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    for t in range(n):
        r = (xx * 2 + t * 3) % 256
        g = (yy * 2 + t * 5) % 256
        b = 128 + 90 * np.sin((xx + yy + 4 * t) / 9.0)
        frame = np.stack([r, g, b], axis=-1) + texture
        x0 = (t * 4) % 96
        frame[40:72, x0:x0 + 32] = (250, 240, 30)
        frames[t] = np.clip(frame, 0, 255)
    return frames


def make_episode(
    path: str | Path,
    num_frames: int,
    seed: int,
    embeds: np.ndarray | None = None,
    env_buttons: np.ndarray | None = None,
    env_camera: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    conversion: dict | None = None,
    source: dict | None = None,
) -> Path:
    """Write a valid episode of our format with EpisodeWriter; defaults: index frames/embeds, random actions.

    `conversion` goes into metadata.json as the converter's options (labelling rules, ...); `source` adds to
    metadata.json's source (e.g. {"mineclip": {"demo_random_weights": True}}).
    """
    path = Path(path)
    frames = index_frames(range(num_frames)) if frames is None else np.asarray(frames)
    embeds = index_embeds(num_frames, seed) if embeds is None else embeds
    buttons, camera = random_actions(num_frames, seed)
    buttons = buttons if env_buttons is None else np.asarray(env_buttons)
    camera = camera if env_camera is None else np.asarray(env_camera)
    with EpisodeWriter(path, source={"kind": "test", "seed": seed, **(source or {})}, conversion=conversion) as writer:
        for frame in frames:
            writer.append_frame(frame)
        writer.append_actions(buttons, camera)
        writer.set_embeds(embeds)
    return path


def make_dataset(root: str | Path, lengths: list[int], seed: int) -> list[Path]:
    """Episodes episode_000, episode_001, ... of the given lengths under root (created if needed)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return [make_episode(root / f"episode_{i:03d}", n, seed * 1000 + i) for i, n in enumerate(lengths)]


def write_legacy_episode(
    path: Path, n: int = 40, seed: int = 0, frames: np.ndarray | None = None, embeds: np.ndarray | None = None
) -> dict:
    """An episode exactly as the original STEVE-1 EpisodeStorage.save_episode wrote them.

    frames defaults to `moving_frames`, embeds to random rows (the first 15 are stored as None
    whatever is given). Returns what was written: frames, the env action dicts, embeds.
    """
    path = Path(path)
    path.mkdir(parents=True)
    frames = moving_frames(n, seed) if frames is None else np.asarray(frames)
    video = cv2.VideoWriter(str(path / FRAMES_FILE), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, (FRAME_SIZE, FRAME_SIZE))
    for frame in frames:
        video.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    video.release()
    buttons, camera = random_actions(n, seed)
    actions = []
    for i in range(n):
        action = {name: int(buttons[i, j]) for j, name in enumerate(ENV_BUTTONS)}
        # The original conversion stored the camera in an integer array (the truncation bug).
        action["camera"] = camera[i].astype(np.int64) if i % 2 else np.array(camera[i])
        actions.append(action)
    if embeds is None:
        embeds = np.random.default_rng(seed).normal(size=(n, EMBED_DIM)).astype(np.float32)
    embeds_attn = [None] * EMBED_START + [embeds[i].reshape(1, EMBED_DIM) for i in range(EMBED_START, n)]
    with open(path / "actions.pkl", "wb") as file:
        pickle.dump(actions, file)
    with open(path / "embeds_attn.pkl", "wb") as file:
        pickle.dump(embeds_attn, file)
    (path / "len.txt").write_text(str(n))
    (path / METADATA_FILE).write_text(json.dumps({"contractor_version": "6.13", "contractor_index": 3}))
    return {"frames": frames, "actions": actions, "embeds": embeds}


# colour -> the buttons pressed while it is shown: a policy that sees the frame can predict the action
BEHAVIOURS = [((220, 40, 40), ["forward"]), ((40, 220, 40), ["attack"]), ((40, 40, 220), ["jump", "forward"]),
              ((220, 220, 40), ["use"])]


def write_learnable_episode(path: Path, num_frames: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    buttons = np.zeros((num_frames, len(ENV_BUTTONS)), np.uint8)
    with EpisodeWriter(path, source={"kind": "test"}) as writer:
        t = 0
        while t < num_frames:
            colour, pressed = BEHAVIOURS[int(rng.integers(len(BEHAVIOURS)))]
            for _ in range(min(int(rng.integers(5, 15)), num_frames - t)):
                frame = np.empty((128, 128, 3), np.uint8)
                frame[:] = colour
                frame[:, (t * 3) % 128 :: 16] //= 2  # a little motion
                writer.append_frame(frame)
                for name in pressed:
                    buttons[t, ENV_BUTTONS.index(name)] = 1
                t += 1
        writer.append_actions(buttons, np.zeros((num_frames, 2), np.float32))
        embeds = rng.normal(size=(num_frames, 512)).astype(np.float32)
        embeds[:15] = np.nan
        writer.set_embeds(embeds)


def make_learnable_sampling(root: Path, num_frames: int = 80) -> Path:
    """4 training and 2 validation learnable episodes and the sampling 'toy'; returns the sampling directory."""
    names = [f"ep{i}" for i in range(6)]
    for i, name in enumerate(names):
        write_learnable_episode(root / "episodes" / name, num_frames, seed=i)
    (root / "samplings").mkdir()
    (root / "samplings" / "toy_train.txt").write_text("".join(f"{root / 'episodes' / n}\n" for n in names[:4]))
    (root / "samplings" / "toy_val.txt").write_text("".join(f"{root / 'episodes' / n}\n" for n in names[4:]))
    return root / "samplings"
