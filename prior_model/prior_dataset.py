"""The prior's training data: pairs of (MineCLIP text embedding, MineCLIP visual embedding).

Our format is a `.npz` read with `allow_pickle=False`: `text_embeds` [N, E] float32, `visual_embeds`
[N, E] float32 and optionally `texts` [N] str. The original STEVE-1 `data.pkl` (a pickled dict with
lists `text_embeddings` and `visual_embeddings` of arrays reshapeable to [-1, 512]) is read only when
the caller passes `trust_pickle=True`, because unpickling a file can run arbitrary code.
"""

from __future__ import annotations

import io

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit_utils.atomic_files import atomic_write_bytes

PICKLE_SUFFIXES = (".pkl", ".pickle")
ORIGINAL_TEXT_KEY = "text_embeddings"
ORIGINAL_VISUAL_KEY = "visual_embeddings"
ORIGINAL_TEXTS_KEYS = ("texts", "text")  # not documented by the original; kept when present and sane


@dataclass
class PriorPairs:
    """Aligned arrays of text embeddings, visual embeddings and (optionally) the texts."""

    text_embeds: np.ndarray  # (N, E) float32
    visual_embeds: np.ndarray  # (N, E) float32
    texts: np.ndarray | None = None  # (N,) str

    def __post_init__(self) -> None:
        if self.text_embeds.ndim != 2 or self.text_embeds.shape != self.visual_embeds.shape:
            raise ValueError(
                f"text_embeds {self.text_embeds.shape} and visual_embeds {self.visual_embeds.shape} "
                "must both be [N, embed_dim]"
            )
        if self.texts is not None and self.texts.shape != (len(self.text_embeds),):
            raise ValueError(f"texts has shape {self.texts.shape}, expected ({len(self.text_embeds)},)")

    def __len__(self) -> int:
        return len(self.text_embeds)

    @property
    def embed_dim(self) -> int:
        """Embedding size E."""
        return self.text_embeds.shape[1]


class UntrustedPickleError(ValueError):
    """A pickle dataset was given without the caller's explicit trust."""


def is_pickle_path(path: str | os.PathLike) -> bool:
    """True for the original STEVE-1 pickle format (by file suffix)."""
    return Path(path).suffix.lower() in PICKLE_SUFFIXES


def load_npz_pairs(path: str | os.PathLike) -> PriorPairs:
    """Read our .npz format without pickle."""
    with np.load(Path(path), allow_pickle=False) as data:
        missing = [k for k in ("text_embeds", "visual_embeds") if k not in data.files]
        if missing:
            raise ValueError(f"{path} lacks array(s) {missing}; it has {data.files}")
        texts = data["texts"].astype(str) if "texts" in data.files else None
        return PriorPairs(
            text_embeds=data["text_embeds"].astype(np.float32),
            visual_embeds=data["visual_embeds"].astype(np.float32),
            texts=texts,
        )


def load_pickle_pairs(path: str | os.PathLike, trust_pickle: bool = False) -> PriorPairs:
    """Read the original STEVE-1 data.pkl; refuses unless trust_pickle is True."""
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{path} is a Python pickle (the original STEVE-1 data.pkl format). Loading a pickle can run "
            "arbitrary code, so it is read only with --trust_pickle: pass it if the file comes from a source "
            "you trust (e.g. the STEVE-1 authors' download). Better: convert it once with --trust_pickle "
            "--convert_only, which writes a pickle-free .npz, and train from that."
        )
    with open(path, "rb") as f:
        data = pickle.load(f)  # noqa: S301 - the user vouched for this file with --trust_pickle
    if not isinstance(data, dict) or ORIGINAL_TEXT_KEY not in data or ORIGINAL_VISUAL_KEY not in data:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: expected a dict with {ORIGINAL_TEXT_KEY!r} and {ORIGINAL_VISUAL_KEY!r}, got {found}")
    text = _stack_embeds(data[ORIGINAL_TEXT_KEY])
    visual = _stack_embeds(data[ORIGINAL_VISUAL_KEY])
    texts = None
    for key in ORIGINAL_TEXTS_KEYS:
        value = data.get(key)
        if isinstance(value, (list, tuple)) and len(value) == len(text) and all(isinstance(t, str) for t in value):
            texts = np.array(value, dtype=str)
            break
    return PriorPairs(text_embeds=text, visual_embeds=visual, texts=texts)


def _stack_embeds(items: object) -> np.ndarray:
    """Stack per-sample embeddings (each (E,) or (1, E)) into (N, E) float32, as the original's reshape does."""
    arr = np.asarray(items, dtype=np.float32)
    return arr.reshape(-1, arr.shape[-1])


def load_pairs(path: str | os.PathLike, trust_pickle: bool = False) -> PriorPairs:
    """Read a prior dataset: .npz always, .pkl only with trust_pickle."""
    if is_pickle_path(path):
        return load_pickle_pairs(path, trust_pickle=trust_pickle)
    return load_npz_pairs(path)


def save_npz_pairs(pairs: PriorPairs, path: str | os.PathLike) -> Path:
    """Write pairs in our .npz format (no pickle), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"text_embeds": pairs.text_embeds.astype(np.float32), "visual_embeds": pairs.visual_embeds.astype(np.float32)}
    if pairs.texts is not None:
        arrays["texts"] = np.asarray(pairs.texts, dtype=str)
    buffer = io.BytesIO()  # a file object: np.savez would otherwise append ".npz" to the name
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def split_indices(n: int, n_validation: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, val) index split: a seeded permutation, the first n_validation go to val."""
    if not 0 < n_validation < n:
        raise ValueError(f"--n_validation {n_validation} must be between 1 and {n - 1} for a dataset of {n} pairs")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_validation:]), np.sort(perm[:n_validation])
