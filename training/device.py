"""Where and how the policy runs: GPU or CPU, bf16 autocast or fp32, compiled or eager."""

from __future__ import annotations

import torch

from toolkit_utils import cli
from toolkit_utils.cpu_cores import usable_cores

PRECISIONS = ("auto", "bf16", "no")  # fp16 is not offered: it would need a checkpointed GradScaler and overflow handling
COMPILE_CHOICES = ("auto", "yes", "no")
NO_GPU_NOTE = ("No GPU: running in fp32 without torch.compile (--mixed_precision auto, --compile auto); bf16 autocast "
               "and compilation on a CPU made the tiny model's first training step take 547 s instead of 1.3 s")


def choose_precision(mixed_precision: str, compile_choice: str, cpu: bool) -> tuple[str, bool, str | None]:
    """(accelerate's mixed_precision, whether to torch.compile, a one-line note or None) on this machine.

    auto: bf16 and compilation on a GPU (bf16 where the GPU has it), fp32 eager on a CPU, where both are
    very slow (measured on a 2-core machine with the tiny policy, see NO_GPU_NOTE).
    """
    on_gpu = torch.cuda.is_available() and not cpu
    precision = mixed_precision
    if precision == "auto":
        precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
    compile_policy = compile_choice == "yes" or (compile_choice == "auto" and on_gpu)
    note = NO_GPU_NOTE if not on_gpu and mixed_precision == compile_choice == "auto" else None
    return precision, compile_policy, note


def check_processes_have_gpus(processes: int, cpu: bool) -> None:
    """Refuse more processes on this machine than it has GPUs: each process trains on its own GPU.

    `processes` counts this machine's processes (torchrun's LOCAL_WORLD_SIZE; the template's NUM_PROCESSES).
    --cpu runs CPU processes (torch.distributed over gloo), which need no GPU.
    """
    gpus = torch.cuda.device_count()
    if processes > 1 and not cpu and gpus < processes:
        cli.refuse("NUM_PROCESSES", processes, f"needs {processes} GPUs (one per process); this machine has {gpus}",
                   f"use NUM_PROCESSES={max(gpus, 1)} (.venv/bin/accelerate launch --num_processes {max(gpus, 1)}), or add --cpu "
                   "to train in CPU processes")


def check_compile(compile_choice: str, cpu: bool) -> None:
    """Refuse --compile yes where training runs on the CPU (no GPU, or --cpu)."""
    if compile_choice == "yes" and (cpu or not torch.cuda.is_available()):
        where = "--cpu is set" if cpu else "no GPU is visible"
        cli.refuse("--compile", compile_choice, f"training runs on the CPU here ({where}), where compiling takes minutes before "
                   "the first step (with bf16 the tiny model's first step took 547 s instead of 1.3 s)",
                   "use --compile auto or no (COMPILE in the scripts), or make the GPU visible (nvidia-smi)")


def capped_workers(requested: int) -> tuple[int, str | None]:
    """DataLoader workers: `requested`, at most one per usable core; and a one-line note when capped.

    More loader processes than cores only compete for them (and DataLoader warns at every epoch).
    """
    cores = usable_cores()
    if requested <= cores:
        return requested, None
    return cores, (f"--num_workers {requested} is more than the {cores} CPU cores this process may use: using {cores} "
                   "DataLoader workers (more would only compete for the cores)")
