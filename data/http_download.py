"""Robust single-file HTTP(S) download with resume, retries and integrity checks (standard library only).

`download_file(url, dest, ...)`:
- downloads into `<dest>.part`, resuming an existing partial file with an HTTP `Range` request (a server
  that ignores Range makes it start over);
- retries connection errors, timeouts, cut-off transfers and HTTP 408/429/5xx with exponential backoff;
  consecutive failures that bring no new bytes count against `retries`;
- checks the size against `Content-Length`/`Content-Range` and `expected_size`, the md5 when given, and the
  content with the caller's `check` (e.g. "an mp4 starts with an ftyp box"): a 200 answer that is an error
  page is deleted and named, never placed, so a re-run downloads it again;
- renames the verified file into place atomically (`os.replace`), so `dest` is complete or absent;
- skips the download when `dest` already exists and passes the checks that are known.

Bounds (defaults; every one is an argument): a socket that receives nothing for `timeout_s` = 20 s counts as
a failed attempt; a file is given up after `retries` + 1 = 4 consecutive attempts that bring no new bytes,
with backoff waits of 1, 2, 4 s between them. So an HTTP 5xx answer costs ~7 s per file, a server that
stops sending ~90 s, and a refused connection ~7 s; a 4xx other than 408/429 fails at once.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from toolkit_utils.file_hashes import file_md5

PART_SUFFIX = ".part"
CHUNK_BYTES = 1 << 20
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 1.0
MAX_BACKOFF_S = 8.0
DEFAULT_TIMEOUT_S = 20.0
USER_AGENT = "steve1-finetune-toolkit-downloader"
RETRYABLE_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})
HTTP_PARTIAL_CONTENT = 206
HTTP_RANGE_NOT_SATISFIABLE = 416
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(RuntimeError):
    """A download that cannot succeed by retrying (bad status, wrong size or md5, retries exhausted)."""


class _TransientError(Exception):
    """A failure worth retrying (the connection dropped, the server is busy...)."""


def part_path(dest: str | os.PathLike) -> Path:
    """Where the partial download of `dest` is kept."""
    dest = Path(dest)
    return dest.with_name(dest.name + PART_SUFFIX)


def is_complete(path: str | os.PathLike, expected_size: int | None = None, expected_md5: str | None = None) -> bool:
    """True if `path` exists and matches the size and md5 that are known."""
    path = Path(path)
    if not path.is_file():
        return False
    if expected_size is not None and path.stat().st_size != expected_size:
        return False
    return expected_md5 is None or file_md5(path) == expected_md5.lower()


def download_file(
    url: str,
    dest: str | os.PathLike,
    expected_size: int | None = None,
    expected_md5: str | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff_s: float = DEFAULT_BACKOFF_S,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: bool = True,
    desc: str | None = None,
    check: Callable[[Path], str | None] | None = None,
) -> Path:
    """Download `url` to `dest` (resumable, retried, verified, atomic); returns `dest`.

    `check(path)` returns why a complete body is not the expected file (None: accept); it runs on the
    finished download before it is placed, and on an existing `dest` before it is reused.
    Raises DownloadError with the reason when the file cannot be had; `dest` is then absent or the previous
    good file, and a `.part` file is kept only if it may be resumed.
    """
    dest = Path(dest)
    if is_complete(dest, expected_size, expected_md5):
        problem = check(dest) if check is not None else None
        if problem is None:
            return dest  # only complete files are ever renamed to dest, so existence (plus known checks) suffices
        print(f"[download] {dest}: {problem}; deleted, downloading it again")
        dest.unlink()
    elif dest.exists():
        print(f"[download] {dest} does not match the expected size/md5; downloading it again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_into(url, part, expected_size, timeout_s, progress, desc or dest.name)
            break
        except _TransientError as e:
            after = part.stat().st_size if part.exists() else 0
            failures = 0 if after > before else failures + 1
            if failures > retries:
                raise DownloadError(f"giving up on {url} after {retries + 1} attempts without progress: {e}") from e
            wait = min(backoff_s * 2 ** max(failures - 1, 0), MAX_BACKOFF_S)
            print(f"[download] {dest.name}: {e}; retrying in {wait:.1f}s (have {after} bytes)")
            time.sleep(wait)
    _verify_and_place(url, part, dest, expected_size, expected_md5, check)
    return dest


def _verify_and_place(url: str, part: Path, dest: Path, expected_size: int | None, expected_md5: str | None,
                      check: Callable[[Path], str | None] | None) -> None:
    """Check the finished .part file, then rename it to dest; a bad file is deleted, never placed."""
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise DownloadError(f"{url}: got {size} bytes, expected {expected_size}; the partial file was deleted")
    if expected_md5 is not None:
        actual = file_md5(part)
        if actual != expected_md5.lower():
            part.unlink()
            raise DownloadError(
                f"md5 mismatch for {url}: got {actual}, expected {expected_md5.lower()}. The download is corrupt "
                f"or the URL serves a different file; nothing was written to {dest} (run again to re-download)"
            )
    problem = check(part) if check is not None else None
    if problem is not None:
        part.unlink()
        raise DownloadError(f"{url} answered with something else: {problem}; the body was deleted "
                            f"({part}), a re-run downloads it again")
    with open(part, "rb+") as f:
        os.fsync(f.fileno())  # the rename must not be seen before the bytes are on disk
    os.replace(part, dest)


def _fetch_into(url: str, part: Path, expected_size: int | None, timeout_s: float, progress: bool, desc: str) -> None:
    """One attempt: append the missing bytes of `url` to `part`; raises _TransientError to be retried."""
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()  # longer than the real file: cannot be a prefix of it
        offset = 0
    if expected_size is not None and offset == expected_size:
        return
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == HTTP_RANGE_NOT_SATISFIABLE and offset:
            total = _parse_unsatisfied_range(e.headers.get("Content-Range"))
            e.close()
            if total == offset:
                return  # the partial file already holds every byte
            part.unlink()
            raise _TransientError(f"server refused to resume at byte {offset} (file has {total}); starting over") from e
        if e.code in RETRYABLE_HTTP_STATUS:
            raise _TransientError(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"HTTP {e.code} {e.reason} for {url}") from e
    except (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
        raise _TransientError(f"cannot connect: {getattr(e, 'reason', e)}") from e

    with response:
        if response.status == HTTP_PARTIAL_CONTENT:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _TransientError(f"server resumed at byte {start}, not {offset}; starting over")
        else:
            offset = 0  # the server sent the whole file (it ignored Range, or none was sent)
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        if expected_size is not None and total is not None and total != expected_size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url} has {total} bytes, expected {expected_size}: it is not the expected file")
        received = offset
        mode = "ab" if offset else "wb"
        with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=desc, disable=not progress, leave=False) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (socket.timeout, ConnectionError, http.client.HTTPException) as e:
                    raise _TransientError(f"transfer interrupted at byte {received}: {e!r}") from e
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        # http.client may end a read early without an error when the server closes the connection
        raise _TransientError(f"connection closed at byte {received} of {total}")


def _parse_content_range(value: str | None) -> tuple[int, int | None]:
    """(first byte, total size or None) from `Content-Range: bytes a-b/total`."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if not match:
        raise _TransientError(f"unusable Content-Range header {value!r}")
    return int(match.group(1)), None if match.group(3) == "*" else int(match.group(3))


def _parse_unsatisfied_range(value: str | None) -> int | None:
    """Total size from `Content-Range: bytes */total` (sent with HTTP 416), if present."""
    match = _UNSATISFIED_RANGE.fullmatch((value or "").strip())
    return int(match.group(1)) if match else None
