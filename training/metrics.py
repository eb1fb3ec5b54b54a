"""One writer for everything a person watches: TensorBoard, the console block and the text log file."""

from __future__ import annotations

import datetime
import os
import shlex
import socket
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

import torch
from tqdm import tqdm

# TensorBoard tags of a fine-tuning run (README lists them): loss/train, loss/val, loss/val_uncond, learning_rate,
# grad_l2_norm, processed_frames, throughput/frames_per_s, memory/peak_gib (GPU), data/skipped_samples.
RUN_MARK = "=" * 8  # starts the lines that mark where a run starts and how it ended, in the text log
PEAK_MEMORY_TAG = "memory/peak_gib"  # benchmarks/bench_train_loop.py reads it from the console block


def daily_log_path(log_dir: str | os.PathLike, name: str = "train") -> Path:
    """`<log_dir>/<name>_YYYYMMDD.log`: the text log of the day a run starts."""
    return Path(log_dir) / f"{name}_{datetime.date.today():%Y%m%d}.log"


class MetricsLogger:
    """Writes only on the main process; the others get a logger that does nothing.

    `purge_step`: a resumed run passes the step after its checkpoint, so TensorBoard drops what the stopped
    run logged past that step and every curve stays monotone in step.
    """

    def __init__(self, tensorboard_dir: str | os.PathLike, text_log: str | os.PathLike, enabled: bool = True,
                 purge_step: int | None = None) -> None:
        self.enabled = enabled
        self.writer = None
        self.log_file = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(tensorboard_dir), purge_step=purge_step)
        self.log_path = Path(text_log)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.log_path, "a", buffering=1)

    def info(self, message: str) -> None:
        """A line to the console (above any progress bar) and the log file."""
        if not self.enabled:
            return
        tqdm.write(message)
        self.log_file.write(message + "\n")

    def run_started(self, command: list[str], settings_hash: str) -> None:
        """Mark a run's start in the text log: when, where, the command line and the hash of its settings.

        The command is shell-quoted, so it can be pasted back and an empty value stays visible (`--freeze ''`).
        """
        self.info(f"{RUN_MARK} {datetime.datetime.now():%Y-%m-%d %H:%M:%S} run started on {socket.gethostname()} "
                  f"(pid {os.getpid()}), settings hash {settings_hash}: {shlex.join(command)}")

    def run_ended(self, how: str) -> None:
        """Mark how a run ended ('finished', 'stopped: ...') in the text log."""
        self.info(f"{RUN_MARK} {datetime.datetime.now():%Y-%m-%d %H:%M:%S} run ended: {how}")

    def run_failed(self, error: BaseException) -> None:
        """Write the error that ended a run, with its traceback, to the text log (Python prints it on the console)."""
        if not self.enabled:
            return
        reason = " ".join(str(error).split()) or "(no message)"
        self.log_file.write(f"{RUN_MARK} {datetime.datetime.now():%Y-%m-%d %H:%M:%S} run ended by an error: "
                            f"{type(error).__name__}: {reason}\n")
        self.log_file.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self.enabled:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.enabled:
            self.writer.add_text(tag, text, step)

    def metrics_block(self, step: int, values: Mapping[str, Any]) -> None:
        """Print and log the guide's console block (`metrics_block_text`)."""
        self.info(metrics_block_text(step, values))

    def close(self) -> None:
        if self.enabled:
            self.writer.flush()
            self.writer.close()
            self.log_file.close()


class TrainingMetrics:
    """The training metrics between two log points, as one dict keyed by TensorBoard tag."""

    def __init__(self, frames: int) -> None:
        self.losses: list[float] = []
        self.since_time, self.since_frames = time.time(), frames

    def add_step(self, loss: float) -> None:
        """The loss of one optimizer step (already averaged over windows and processes)."""
        self.losses.append(loss)

    def collect(self, frames: int, learning_rate: float, grad_norm: float, skipped_samples: int) -> dict[str, float]:
        """The metrics since the last call, keyed by TensorBoard tag; starts the next interval."""
        now = time.time()
        metrics = {
            "loss/train": sum(self.losses) / max(len(self.losses), 1),
            "learning_rate": learning_rate,
            "grad_l2_norm": grad_norm,  # before clipping
            "processed_frames": frames,
            "throughput/frames_per_s": (frames - self.since_frames) / max(now - self.since_time, 1e-9),
            "data/skipped_samples": skipped_samples,
        }
        if torch.cuda.is_available():
            metrics[PEAK_MEMORY_TAG] = torch.cuda.max_memory_allocated() / 2**30
        self.losses.clear()
        self.since_time, self.since_frames = now, frames
        return metrics


def metrics_block_text(step: int, values: Mapping[str, Any]) -> str:
    """The guide's console block: 'Metrics for step N:' then one tab-indented 'tag: value' line per value."""
    lines = [f"Metrics for step {step}:", f"\tCurr DateTime: {datetime.datetime.now()}"]
    lines += [f"\t{k}: {v:.6g}" if isinstance(v, float) else f"\t{k}: {v}" for k, v in values.items()]
    return "\n".join(lines)


def hparams_markdown(config: Mapping[str, Any]) -> str:
    """Settings as a markdown table (TensorBoard's text tab renders it)."""
    rows = "\n".join(f"|{k}|{v}|" for k, v in sorted(config.items()))
    return "|setting|value|\n|-|-|\n" + rows
