"""One step-1 conversion per directory at a time: an exclusive fcntl lock on `<dir>/.step1.lock`.

Two conversions into the same OUTPUT_DIR (or sharing a CACHE_DIR) would race on the same `.part` files and
episode names, and neither could tell the other's temporary directories from a dead writer's. The second
one is refused in one line, before any work; the lock goes away with the process that held it (also when
killed), so a stale lock file never blocks a re-run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from data.episode import remove_dead_writer_leftovers
from toolkit_utils import cli

LOCK_FILE = ".step1.lock"


@contextlib.contextmanager
def hold_directories(directories: dict[str, str | os.PathLike]) -> Iterator[None]:
    """Lock every directory (setting name -> path; created if missing) for the block, or raise cli.SettingError.

    A directory given under two settings is locked once. The refusal names the setting, the directory and
    the process id that holds it.
    """
    held: dict[Path, int] = {}
    try:
        for setting, directory in directories.items():
            path = Path(directory).resolve()
            if path in held:
                continue
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                cli.refuse(setting, directory, f"another step 1 conversion (pid {holder}) is writing into it",
                           "wait until it finishes, or choose another directory")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            held[path] = fd
        yield
    finally:
        for fd in held.values():
            os.close(fd)  # closing the descriptor releases the lock


def remove_dead_writers(output_dir: str | os.PathLike) -> None:
    """Delete the unfinished episodes that killed conversions left in `output_dir`; call it holding the lock.

    Holding the directory's lock, no other conversion can be writing there; a leftover whose process still
    runs on this machine is kept anyway, and named.
    """
    removed, kept = remove_dead_writer_leftovers(output_dir)
    if removed:
        print(f"{output_dir}: removed {len(removed)} unfinished episode(s) of interrupted conversions "
              f"({', '.join(p.name for p in removed[:3])}{'...' if len(removed) > 3 else ''})")
    for path in kept:
        print(f"{output_dir}: {path.name} belongs to a process that still runs (pid in its name); left alone")
