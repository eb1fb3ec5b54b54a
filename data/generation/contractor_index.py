"""VPT contractor index files: where they are, which recordings they list, which ones this worker converts.

An index is JSON `{"basedir": ..., "relpaths": [...]}`; each relpath names `<stem>.mp4` + `<stem>.jsonl`
(with or without `.mp4`). A relative basedir is relative to the index file's folder (or URL); an entry that
would leave the basedir is refused with its reason, the other entries convert.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import re
import urllib.parse
from pathlib import Path

import numpy as np

from data.http_download import DownloadError, download_file

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
    """An index cannot be had or read, or an entry would read outside its base. The message is one line."""


@dataclasses.dataclass(frozen=True)
class Recording:
    """One recording of an index: its video and actions location and the episode name it converts to."""

    name: str
    relpath: str
    video: str  # URL or local path
    actions: str

    @property
    def is_local(self) -> bool:
        return not _is_url(self.video)


@dataclasses.dataclass(frozen=True)
class ContractorIndex:
    """A loaded index: where it came from, its basedir resolved (absolute path or URL), its raw entries."""

    location: str
    basedir: str
    relpaths: list


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https")


def index_location(spec: str) -> str:
    """A version key (e.g. '10.x') -> its URL; a URL or a path stays as given."""
    return INDEX_URLS.get(spec, spec)


def index_spec_problem(spec: str) -> str | None:
    """Why `spec` names no index at all (checked before any work), or None."""
    location = index_location(spec)
    if _is_url(location) or Path(location).is_file():
        return None
    return f"is neither a known version ({', '.join(INDEX_URLS)}), an http(s) URL, nor an existing file"


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return f"not JSON ({e})"
    return None


def load_index(spec: str, cache_dir: str | os.PathLike, retries: int | None = None,
               timeout_s: float | None = None) -> ContractorIndex:
    """Read (downloading into `cache_dir/indexes` once) the index `spec` names; IndexFileError in one line."""
    location = index_location(spec)
    if _is_url(location):
        target = Path(cache_dir) / "indexes" / _SAFE_NAME.sub("_", urllib.parse.urlparse(location).path.strip("/"))
        limits = {k: v for k, v in (("retries", retries), ("timeout_s", timeout_s)) if v is not None}
        try:
            download_file(location, target, progress=False, check=_json_problem, **limits)
        except DownloadError as e:
            raise IndexFileError(f"{location}: {e}") from None
        path = target
    else:
        path = Path(location)
        problem = index_spec_problem(spec)
        if problem:
            raise IndexFileError(f"{spec}: {problem}")
    try:
        index = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexFileError(f"{path}: not a JSON index ({e})") from None
    except OSError as e:
        raise IndexFileError(f"{path}: unreadable ({e.strerror or e})") from None
    shape = "expected {\"basedir\": <folder or URL>, \"relpaths\": [<path>, ...]}"
    if not isinstance(index, dict):
        raise IndexFileError(f"{path}: the index is a {type(index).__name__}, {shape}")
    basedir, relpaths = index.get("basedir"), index.get("relpaths")
    if not isinstance(basedir, str) or not basedir:
        raise IndexFileError(f"{path}: basedir is {json.dumps(basedir)}, {shape}")
    if not isinstance(relpaths, list):
        raise IndexFileError(f"{path}: relpaths is {type(relpaths).__name__ if relpaths is not None else 'missing'}, {shape}")
    resolved = resolve_basedir(basedir, location)
    if not _is_url(resolved) and not Path(resolved).is_dir():  # one line for the index, not one per recording
        raise IndexFileError(f"{path}: basedir {basedir!r} is not a folder ({resolved}; a relative basedir is relative "
                             "to the index file's folder); fix basedir in the index, or put the recordings there")
    return ContractorIndex(location, resolved, relpaths)


def resolve_basedir(basedir: str, index_location: str) -> str:
    """A basedir as the index states it -> an absolute path or URL; a relative one is relative to the index."""
    if _is_url(basedir):
        return basedir
    if _is_url(index_location):
        return urllib.parse.urljoin(index_location, basedir)
    base = Path(basedir).expanduser()
    if not base.is_absolute():
        base = Path(index_location).resolve().parent / base
    return str(base)


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


def recordings(index: ContractorIndex) -> tuple[list[Recording], list[str]]:
    """The index's recordings (sorted by relpath) and the entries refused, each with the reason."""
    found, refused = {}, []
    for relpath in index.relpaths:
        try:
            stem = relpath[: -len(".mp4")] if isinstance(relpath, str) and relpath.endswith(".mp4") else relpath
            video = _resolve(index.basedir, stem, ".mp4")
            actions = _resolve(index.basedir, stem, ".jsonl")
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
