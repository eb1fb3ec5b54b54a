"""Running conversions on every core: a pool of processes, each converting whole recordings.

Design: step 1 is CPU-bound per recording (h264 decode of 640x360 video, two resizes per frame, h264 encode
of the 128x128 episode); MineCLIP is a small part of the time on a GPU. So each of the `jobs` processes
converts one recording at a time from start to end, with its own MineCLIP copy on the device (CUDA
time-slices the processes; with several GPUs, process k uses GPU k mod the GPU count). No frames cross
process boundaries: a process reads the recording's files and writes its episode. Each process gets
cores / jobs threads for torch, OpenCV and the video decoder, so the pool does not oversubscribe the CPU.
`jobs=1` runs everything in the calling process (no pool, no extra MineCLIP copy).

A recording that fails returns its one-line reason; it never stops the pool. If a process dies (a crash
inside a codec), the recordings it held fail with that reason and a fresh pool takes the rest. If the step-1
process dies (even by SIGKILL, which runs no cleanup), its pool processes die with it: they must not go on
writing into a directory whose lock was released with their parent (`_die_with_parent`).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm import tqdm

from data.generation.contractor_actions import ActionFileError, load_actions_file
from data.generation.episode_conversion import ConversionError, ConversionOptions, convert_recording, load_goal_encoder
from data.video_io import SEQUENTIAL_THREADS, VideoError
from toolkit_utils.cpu_cores import usable_cores
from toolkit_utils.file_hashes import file_sha256

OK, SKIP, FAIL = "OK", "SKIP", "FAIL"


@dataclasses.dataclass(frozen=True)
class GoalEncoderSpec:
    """Which MineCLIP every conversion process loads, and where it runs."""

    mineclip_weights: str | None
    demo_random_mineclip: bool
    device: str  # "cpu" or "cuda"
    mineclip_sha256: str | None = None  # of mineclip_weights, recorded in every episode (goal_encoder_spec)


def goal_encoder_spec(mineclip_weights: str | None, demo_random_mineclip: bool, device: str | None) -> GoalEncoderSpec:
    """The spec of a conversion run: the weights file's sha256 is computed here, once (~1 s per GB)."""
    sha256 = None if demo_random_mineclip or not mineclip_weights else file_sha256(mineclip_weights)
    return GoalEncoderSpec(mineclip_weights, demo_random_mineclip, device or default_device(), sha256)


@dataclasses.dataclass(frozen=True)
class ConversionTask:
    """One recording to convert (everything a process needs; picklable)."""

    name: str  # the recording's name in messages
    video: str
    actions: str  # jsonl path
    out_dir: str
    source: dict
    options: ConversionOptions


@dataclasses.dataclass(frozen=True)
class ConversionOutcome:
    """What became of one task: status OK / SKIP / FAIL and the one-line message."""

    name: str
    status: str
    message: str
    kept_frames: int = 0
    seconds: float = 0.0


class MineCLIPLoadError(RuntimeError):
    """The conversion processes cannot load MineCLIP: nothing can be converted."""


class _Converter:
    """The per-process state: the goal encoder and how many threads this process may use."""

    def __init__(self, spec: GoalEncoderSpec, threads: int, device_index: int) -> None:
        import cv2
        import torch

        if threads:
            torch.set_num_threads(threads)
            cv2.setNumThreads(threads)
        device = spec.device
        if device == "cuda" and torch.cuda.device_count() > 1:
            device = f"cuda:{device_index % torch.cuda.device_count()}"
        self.device = device
        self.decoder_threads = threads or SEQUENTIAL_THREADS
        # The demo MineCLIP is too small to gain from threads on a CPU: OpenMP's spinning made a 16-frame
        # conversion cost ~4x the CPU time with 2 threads than with 1 (on the 2-core machine).
        self.torch_threads = 1 if spec.demo_random_mineclip and device == "cpu" else None
        self.load_error: str | None = None
        try:
            self.encoder, self.mineclip_info = load_goal_encoder(spec.mineclip_weights, spec.demo_random_mineclip, device,
                                                                 spec.mineclip_sha256)
        except Exception as e:  # any reason: the run must stop with it, in one line
            self.load_error = f"cannot load MineCLIP from {spec.mineclip_weights}: {' '.join(str(e).split())}"

    def run(self, task: ConversionTask, progress: bool) -> ConversionOutcome:
        """Convert one task; every problem with the recording becomes a FAIL outcome."""
        import torch

        if self.load_error:
            raise MineCLIPLoadError(self.load_error)
        previous = torch.get_num_threads()
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)  # restored below: inline, this is the caller's process
        try:
            return self._run(task, progress)
        finally:
            torch.set_num_threads(previous)

    def _run(self, task: ConversionTask, progress: bool) -> ConversionOutcome:
        start = time.time()
        try:
            actions = load_actions_file(task.actions)
            source = {**task.source, "mineclip": self.mineclip_info}
            episode, message = convert_recording(task.video, actions, task.out_dir, self.encoder, task.options, source,
                                                 self.device, progress=progress, decoder_threads=self.decoder_threads)
        except (ActionFileError, ConversionError, VideoError, OSError) as e:
            return ConversionOutcome(task.name, FAIL, _first_line(e), seconds=time.time() - start)
        except Exception as e:  # a bug met on this input: fail this recording, keep converting the others
            return ConversionOutcome(task.name, FAIL, f"unexpected {type(e).__name__}: {_first_line(e)} (a bug: please "
                                     "report it with this recording)", seconds=time.time() - start)
        if episode is None:
            return ConversionOutcome(task.name, SKIP, message, seconds=time.time() - start)
        kept = int(message.split()[0])
        return ConversionOutcome(task.name, OK, message, kept, time.time() - start)


@dataclasses.dataclass
class Summary:
    """Counts of one run (or several added up), printed at the end."""

    converted: int = 0
    skipped: int = 0
    failed: int = 0
    kept_frames: int = 0

    def count(self, outcome: ConversionOutcome) -> None:
        """Print the outcome's line (OK / SKIP / FAIL <recording>: <message>) and count it."""
        if outcome.status == OK:
            tqdm.write(f"OK   {outcome.name}: {outcome.message} in {outcome.seconds:.0f}s")
            self.converted += 1
            self.kept_frames += outcome.kept_frames
        else:
            tqdm.write(f"{outcome.status:<4} {outcome.name}: {outcome.message}")
            if outcome.status == SKIP:
                self.skipped += 1
            else:
                self.failed += 1

    def add(self, other: "Summary") -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def line(self) -> str:
        return (f"{self.converted} converted ({self.kept_frames} frames), {self.skipped} skipped, {self.failed} failed"
                + (" (re-run to retry failures)" if self.failed else ""))


def default_device() -> str:
    """cuda when a GPU is visible, else cpu."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


_process_converter: _Converter | None = None  # the converter of a pool process (set by its initializer)
_parent_pid: int | None = None  # the step-1 process that started this pool process
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_CHECK_S = 1.0  # how often a pool process without PR_SET_PDEATHSIG looks for its parent


def _die_with_parent(parent_pid: int) -> None:
    """End this pool process as soon as `parent_pid` (the step-1 process) is gone, however it ended.

    The directory lock dies with the parent, so a pool process that outlived it (kill -9 of the parent runs
    no cleanup) would go on writing episodes while a re-run removes its "dead" temporary directories or
    converts the same recordings. On Linux the kernel sends SIGKILL when the parent dies (PR_SET_PDEATHSIG;
    it fires when the parent THREAD that started this process ends: ConversionPool starts its processes
    from the thread that calls submit, the main thread of the step). Elsewhere a daemon thread checks the
    parent every PARENT_CHECK_S seconds. Either way, a parent that died before this ran is caught at once.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):  # no prctl in this libc: the thread below watches instead
            armed = False
    _exit_if_orphaned(parent_pid)  # re-parented already: the parent died before prctl took effect
    if not armed:
        def watch() -> None:
            while True:
                time.sleep(PARENT_CHECK_S)
                _exit_if_orphaned(parent_pid)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _exit_if_orphaned(parent_pid: int) -> None:
    if os.getppid() != parent_pid:  # the parent is gone: this process was re-parented to init or a subreaper
        os._exit(1)


def _start_process(spec: GoalEncoderSpec, threads: int, counter: Any, parent_pid: int) -> None:
    global _process_converter, _parent_pid
    _parent_pid = parent_pid
    _die_with_parent(parent_pid)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _process_converter = _Converter(spec, threads, index)


def _run_in_process(task: ConversionTask) -> ConversionOutcome:
    _exit_if_orphaned(_parent_pid)  # cheap: never start a recording for a parent that is gone
    return _process_converter.run(task, progress=False)


class ConversionPool:
    """`submit(task)` -> Future[ConversionOutcome], run on `jobs` processes (or inline for jobs=1).

    MineCLIP is loaded lazily, by the first submit, so a run with nothing to convert loads nothing.
    Use as a context manager; `close()` waits for running tasks.
    """

    def __init__(self, jobs: int, spec: GoalEncoderSpec, cores: int | None = None, progress: bool = True) -> None:
        self.jobs, self.spec, self.progress = jobs, spec, progress
        cores = cores or usable_cores()
        self.threads = max(1, cores // jobs) if jobs > 1 else 0  # 0: the libraries' defaults (every core)
        self._inline: _Converter | None = None
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None

    def submit(self, task: ConversionTask) -> concurrent.futures.Future:
        """Start converting `task`; the future's result is its ConversionOutcome (MineCLIPLoadError: stop the run)."""
        if self.jobs == 1:
            future: concurrent.futures.Future = concurrent.futures.Future()
            try:
                if self._inline is None:
                    self._inline = _Converter(self.spec, self.threads, 0)
                future.set_result(self._inline.run(task, self.progress))
            except MineCLIPLoadError as e:
                future.set_exception(e)
            return future
        if self._executor is None:
            self._start_executor()
        try:
            return self._executor.submit(_run_in_process, task)
        except BrokenProcessPool:
            self._start_executor()
            return self._executor.submit(_run_in_process, task)

    def _start_executor(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        # spawn: the parent runs download threads; forking a threaded process can deadlock the child.
        context = multiprocessing.get_context("spawn")
        counter = context.Value("i", 0)
        self._executor = concurrent.futures.ProcessPoolExecutor(
            self.jobs, mp_context=context, initializer=_start_process,
            initargs=(self.spec, self.threads, counter, os.getpid()))

    def outcome(self, task: ConversionTask, future: concurrent.futures.Future) -> ConversionOutcome:
        """The future's outcome; a process that died becomes this task's FAIL line."""
        try:
            return future.result()
        except BrokenProcessPool:
            return ConversionOutcome(task.name, FAIL, "the conversion process died (a crash while decoding or "
                                     "encoding?); a re-run retries it")

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> "ConversionPool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
