"""Where and how the policy runs: GPU or CPU, bf16 autocast or fp32, compiled or eager."""

from __future__ import annotations

import torch

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
