"""One writer for everything a person watches: TensorBoard, the console block and the daily log file."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any, Mapping

from tqdm import tqdm

# TensorBoard tags (README lists them): loss/train, loss/val, learning_rate, grad_l2_norm, processed_frames,
# throughput/frames_per_s, memory/peak_gib.


class MetricsLogger:
    """Writes only on the main process; the others get a logger that does nothing."""

    def __init__(self, tensorboard_dir: str | os.PathLike, log_dir: str | os.PathLike, enabled: bool = True) -> None:
        self.enabled = enabled
        self.writer = None
        self.log_file = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(tensorboard_dir))
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.log_path = Path(log_dir) / f"train_{datetime.date.today():%Y%m%d}.log"
        self.log_file = open(self.log_path, "a", buffering=1)

    def info(self, message: str) -> None:
        """A line to the console (above any progress bar) and the log file."""
        if not self.enabled:
            return
        tqdm.write(message)
        self.log_file.write(message + "\n")

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self.enabled:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str) -> None:
        if self.enabled:
            self.writer.add_text(tag, text, 0)

    def metrics_block(self, step: int, values: Mapping[str, Any]) -> None:
        """The guide's console block: 'Metrics for step N:' then one tab-indented line per value."""
        lines = [f"Metrics for step {step}:", f"\tCurr DateTime: {datetime.datetime.now()}"]
        lines += [f"\t{k}: {v:.6g}" if isinstance(v, float) else f"\t{k}: {v}" for k, v in values.items()]
        self.info("\n".join(lines))

    def close(self) -> None:
        if self.enabled:
            self.writer.flush()
            self.writer.close()
            self.log_file.close()


def hparams_markdown(config: Mapping[str, Any]) -> str:
    """Settings as a markdown table (TensorBoard's text tab renders it)."""
    rows = "\n".join(f"|{k}|{v}|" for k, v in sorted(config.items()))
    return "|setting|value|\n|-|-|\n" + rows
