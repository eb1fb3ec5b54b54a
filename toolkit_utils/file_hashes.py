"""Hex digests of files, read in chunks (one implementation for downloads, episodes, runs and rollouts)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

CHUNK_BYTES = 4 * 2**20


def file_hexdigest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of the file at `path` with `hashlib.new(algorithm)`; reads 4 MiB at a time (~1 s per GB).

    Raises OSError when the file cannot be read.
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    return file_hexdigest(path, "sha256")


def file_md5(path: str | os.PathLike) -> str:
    """Hex md5 of a file (the checksum the MineCLIP and VPT download pages publish)."""
    return file_hexdigest(path, "md5")


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """{'path', 'bytes', 'sha256'} of a file: enough to tell later which file a run or rollout used."""
    return {"path": str(path), "bytes": os.path.getsize(path), "sha256": file_sha256(path)}
