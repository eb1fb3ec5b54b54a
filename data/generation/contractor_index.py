"""VPT contractor index files: where they are, which recordings they list, which ones this worker converts."""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import re
import urllib.parse
from pathlib import Path

import numpy as np

from data.http_download import download_file

SNAPSHOTS = "https://openaipublic.blob.core.windows.net/minecraft-rl/snapshots/"
INDEX_URLS = {
    "6.x": SNAPSHOTS + "all_6xx_Jun_29.json",
    "7.x": SNAPSHOTS + "all_7xx_Apr_6.json",
    "8.x": SNAPSHOTS + "all_8xx_Jun_29.json",
    "9.x": SNAPSHOTS + "all_9xx_Jun_29.json",
    "10.x": SNAPSHOTS + "all_10xx_Jun_29.json",
    "basalt-find-cave": SNAPSHOTS + "find-cave-Jul-28.json",
    "basalt-waterfall": SNAPSHOTS + "waterfall-Jul-28.json",
    "basalt-pen-animals": SNAPSHOTS + "pen-animals-Jul-28.json",
    "basalt-build-house": SNAPSHOTS + "build-house-Jul-28.json",
}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class IndexFileError(ValueError):
    """An index file is unreadable, or an entry would read outside its base."""


@dataclasses.dataclass(frozen=True)
class Recording:
    """One recording of an index: its video and actions location and the episode name it converts to."""

    name: str
    relpath: str
    video: str  # URL or local path
    actions: str

    @property
    def is_local(self) -> bool:
        return not urllib.parse.urlparse(self.video).scheme.startswith("http")


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https")


def load_index(spec: str, cache_dir: str | os.PathLike) -> tuple[dict, str]:
    """A version key (e.g. '10.x'), an index URL or a local path -> (index dict, where it came from)."""
    location = INDEX_URLS.get(spec, spec)
    if _is_url(location):
        target = Path(cache_dir) / "indexes" / _SAFE_NAME.sub("_", urllib.parse.urlparse(location).path.strip("/"))
        if not target.exists():
            download_file(location, target, progress=False)
        path = target
    else:
        path = Path(location)
        if not path.is_file():
            known = ", ".join(INDEX_URLS)
            raise IndexFileError(f"index {spec!r} is neither a known version ({known}), a URL, nor an existing file")
    try:
        index = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexFileError(f"{path}: not a JSON index ({e})") from None
    if not isinstance(index, dict) or not isinstance(index.get("basedir"), str) or not isinstance(index.get("relpaths"), list):
        raise IndexFileError(f"{path}: expected {{'basedir': str, 'relpaths': [str, ...]}}")
    return index, location


def _resolve(basedir: str, relpath: str, suffix: str) -> str:
    """basedir + relpath + suffix, refusing anything that would leave basedir."""
    if not isinstance(relpath, str) or not relpath or "\\" in relpath or "\x00" in relpath:
        raise IndexFileError(f"bad relpath {relpath!r}")
    if relpath.startswith("/") or urllib.parse.urlparse(relpath).scheme or relpath.startswith("//"):
        raise IndexFileError(f"relpath {relpath!r} is absolute or names a host: refused")
    parts = relpath.split("/")
    if any(p in ("..", ".") for p in parts) or posixpath.normpath(relpath) != relpath:
        raise IndexFileError(f"relpath {relpath!r} escapes the index's basedir: refused")
    base = basedir if basedir.endswith("/") else basedir + "/"
    if _is_url(base):
        url = urllib.parse.urljoin(base, urllib.parse.quote(relpath + suffix))
        if urllib.parse.urlparse(url).netloc != urllib.parse.urlparse(base).netloc or not url.startswith(base):
            raise IndexFileError(f"relpath {relpath!r} leads to another host or path: refused")
        return url
    root = Path(base).resolve()
    path = (root / (relpath + suffix)).resolve()
    if root not in path.parents:
        raise IndexFileError(f"relpath {relpath!r} leads outside {root}: refused")
    return str(path)


def recordings(index: dict) -> tuple[list[Recording], list[str]]:
    """The index's recordings (sorted by relpath) and the entries refused, each with the reason."""
    found, refused = {}, []
    for relpath in index["relpaths"]:
        try:
            stem = relpath[: -len(".mp4")] if isinstance(relpath, str) and relpath.endswith(".mp4") else relpath
            video = _resolve(index["basedir"], stem, ".mp4")
            actions = _resolve(index["basedir"], stem, ".jsonl")
        except IndexFileError as e:
            refused.append(str(e))
            continue
        name = _SAFE_NAME.sub("_", stem.replace("/", "_")).strip("._") or "recording"
        found[name] = Recording(name=name, relpath=stem, video=video, actions=actions)
    return [found[k] for k in sorted(found)], refused


def select_recordings(
    all_recordings: list[Recording], num_episodes: int, worker_id: int = 0, num_workers: int = 1, seed: int = 0
) -> list[Recording]:
    """A seeded sample of `num_episodes` recordings (-1: all), then this worker's share (every num_workers-th)."""
    if not 0 <= worker_id < num_workers:
        raise ValueError(f"--worker_id {worker_id} must be in 0..{num_workers - 1}")
    order = np.random.default_rng(seed).permutation(len(all_recordings))
    chosen = [all_recordings[i] for i in order]
    if num_episodes >= 0:
        chosen = chosen[:num_episodes]
    return chosen[worker_id::num_workers]
