"""How many CPU cores this process may use (one answer for step 1's --jobs and training's DataLoader workers)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one (Linux), else all; at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
