"""Progress bars that suit both a terminal and a log file.

On a terminal a bar redraws itself in place several times a second. Redirected to a file (`nohup ... > log`,
a batch system's log, pytest's capture) every redraw would be more text: tqdm redraws on each `set_postfix`
and around each `tqdm.write` whatever its `mininterval`. There the bar is a plain status line instead, written
at most every `LOG_FILE_INTERVAL_S` seconds and once more when a bar that stays (`leave`) closes: a sign of
life in the log, without flooding it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

LOG_FILE_INTERVAL_S = 30.0


class LogFileProgress(tqdm):
    """A tqdm bar for output that is not a terminal: whole status lines, at most one per LOG_FILE_INTERVAL_S."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # before tqdm's __init__, which draws once: the first line comes after one interval, not at the start
        self._last_line_t = time.monotonic()
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None, force: bool = False) -> bool:
        """Write the status as one line when an interval has passed (or `force`); clearing (msg '') writes nothing."""
        if msg == "":
            return False
        now = time.monotonic()
        if not force and now - self._last_line_t < LOG_FILE_INTERVAL_S:
            return False
        self._last_line_t = now
        self.fp.write(f"{self if msg is None else msg}\n")
        self.fp.flush()
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing is drawn in place, so there is nothing to clear."""

    def close(self) -> None:
        """The final status line of a bar that stays; nothing for one that goes (leave=False)."""
        if not self.disable and (self.leave or (self.leave is None and not self.pos)):
            self.display(force=True)
        self.leave = False  # tqdm's own close would draw it again
        super().close()


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """`tqdm(*args, **kwargs)` on a terminal; a LogFileProgress when its output (`file`, else stderr) is not one."""
    out = kwargs.get("file") or sys.stderr
    if getattr(out, "isatty", lambda: False)():
        return tqdm(*args, **kwargs)
    return LogFileProgress(*args, **kwargs)
