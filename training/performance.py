"""How the policy trains fast on a GPU: regional compilation, and a memory mode.

One entry point, called once on the unwrapped policy before training:
    speed_up_training(policy, compile_regions=True, low_memory=False)

Regional compilation (`compile_regions`): each ImpalaCNN stack and each transformer block is compiled on
its own instead of the whole policy. The four transformer blocks share their compiled code, so there is
less to compile (a faster start), and the compiled graphs are found in torch.compile's on-disk cache on
the next launch. Compiled code runs only while gradients are on: no-grad calls (validation, acting) run
the same modules eagerly, so they never compile anything. Shapes are static: a run whose windows all have
one shape compiles each region once, before its first optimizer step.

Memory mode (`low_memory`): the first CNN stack (64x64, 128 channels, about half of the activations kept
for backward) keeps only its input and is recomputed during backward, `chunks` groups of frames at a
time (torch.utils.checkpoint per group), so its activations never exist for the whole batch at once. The
gradients are those of the plain model (the same computation, summed over the groups); it costs one more
forward pass of that stack. Works compiled and eager.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

_MARK = "_training_speed_wrapped"  # set on modules whose forward this module replaced


def speed_up_training(
    policy: nn.Module,
    *,
    compile_regions: bool = True,
    low_memory: bool = False,
    chunks: int = 4,
    backend: str = "inductor",
) -> None:
    """Change `policy` (a MinecraftAgentPolicy, unwrapped) in place for training; call once, before the first step.

    compile_regions: torch.compile each CNN stack and each transformer block (static shapes; only while
        gradients are on). `backend` is torch.compile's backend ("inductor"; tests use "aot_eager").
    low_memory: the memory mode (see the module docstring); the frames of a window (batch x trunc_t) are
        recomputed in `chunks` groups (if they do not divide evenly, the last group compiles once more).
    Raises ValueError if the policy was already changed (a second call would wrap twice) or chunks < 1.
    """
    stacks = policy.net.img_process.cnn.stacks
    blocks = policy.net.recurrent_layer.blocks
    if any(getattr(m, _MARK, False) for m in [*stacks, *blocks]):
        raise ValueError("speed_up_training was already applied to this policy")
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    if compile_regions:
        for module in [*stacks, *blocks]:
            _compile_while_training(module, backend)
    if low_memory:
        _recompute_in_chunks(stacks[0], chunks)
    for module in [*stacks, *blocks]:
        setattr(module, _MARK, True)


def _compile_while_training(module: nn.Module, backend: str) -> None:
    """Run `module` compiled while gradients are on, eagerly otherwise (no compilation for no-grad calls)."""
    eager_forward = module.forward
    compiled_forward = torch.compile(eager_forward, backend=backend, dynamic=False)

    def forward(*args, **kwargs):
        if torch.is_grad_enabled():
            return compiled_forward(*args, **kwargs)
        return eager_forward(*args, **kwargs)

    module.forward = forward


def _recompute_in_chunks(module: nn.Module, chunks: int) -> None:
    """Keep only the input of `module` for backward and recompute its forward there, `chunks` groups at a time."""
    inner: Callable[[torch.Tensor], torch.Tensor] = module.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return inner(x)
        return torch.cat([checkpoint(inner, part, use_reentrant=False) for part in x.chunk(chunks)])

    module.forward = forward
