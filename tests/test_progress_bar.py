"""toolkit_utils/progress.py: a bar in a log file writes a few whole lines, not a redraw per update."""

from __future__ import annotations

import io

from tqdm import tqdm

from toolkit_utils import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_in_a_log_file_writes_one_line_at_its_end_not_one_per_redraw():
    log = io.StringIO()
    bar = progress.progress_bar(total=500, desc="train", unit="step", file=log)
    for step in range(500):
        bar.update(1)
        bar.set_postfix(loss=step)  # tqdm redraws here, whatever its mininterval
        if step % 50 == 0:
            tqdm.write(f"Metrics for step {step}", file=io.StringIO())  # clears and redraws every bar
        inner = progress.progress_bar(range(3), desc="validation", leave=False, file=log)
        list(inner)
    bar.close()
    assert log.getvalue().count("\n") == 1 and "\r" not in log.getvalue()
    assert log.getvalue().startswith("train: 100%") and "500/500" in log.getvalue()


def test_a_bar_in_a_log_file_writes_a_line_each_interval(monkeypatch):
    monkeypatch.setattr(progress, "LOG_FILE_INTERVAL_S", 0.0)
    log = io.StringIO()
    with progress.progress_bar(total=3, desc="train", file=log, mininterval=0) as bar:
        for _ in range(3):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert lines[-1].startswith("train: 100%") and len(lines) >= 3 and "\r" not in log.getvalue()


def test_a_terminal_gets_tqdms_own_bar():
    bar = progress.progress_bar(total=3, file=Terminal())
    assert type(bar) is tqdm
    bar.close()
