"""One writer per checkpoint folder: an flock on `<checkpoint_dir>/run.lock`, held for the run's life.

The operating system releases an flock when its holder dies (kill -9, a crashed node), so a lock left by
a dead run is simply taken over; the holder's host, pid, start time and command line are written in the
file so a refused run can say who holds the folder. The lock is advisory: it stops a second train.py,
not someone who copies files into the folder by hand. On NFS, Linux maps flock to POSIX locks (NLM),
which also work across machines.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import shlex
import socket
import sys
from pathlib import Path

LOCK_FILE = "run.lock"


class RunLockHeld(Exception):
    """Another live process holds the folder; `str(e)` names it."""


def _describe(text: str) -> str:
    """'pid 123 on host h since 2026-01-01 12:00:00 (training/train.py ...)' from the lock file's text."""
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on host {info['host']} since {info['started']} ({info['command']})"
    except (ValueError, KeyError, TypeError):
        return "a process that left no details"


def lock_holder(directory: str | os.PathLike) -> str | None:
    """Who holds the folder now (a description), or None when it is free. Reads only; creates nothing."""
    try:
        fd = os.open(Path(directory) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # conflicts with the holder's exclusive lock
        except BlockingIOError:
            return _describe(os.pread(fd, 4096, 0).decode(errors="replace"))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class RunLock:
    """The exclusive lock of one checkpoint folder. `acquire()` raises RunLockHeld when a live run has it."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; returns a description of a dead holder whose lock was taken over, else None."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0).decode(errors="replace"))
            os.close(fd)
            raise RunLockHeld(holder) from None
        left_behind = os.pread(fd, 4096, 0).decode(errors="replace").strip()  # a clean release leaves it empty
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}",
              "command": shlex.join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return _describe(left_behind) if left_behind else None

    def release(self) -> None:
        """Empty the file and unlock. Explicit LOCK_UN: forked DataLoader workers share the open file."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
