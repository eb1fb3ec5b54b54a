"""What is trained and how: freezing parts of the policy and AdamW with the original decay groups."""

from __future__ import annotations

import torch
from torch import nn

# --freeze names -> parameter name prefixes of the STEVE-1 policy (the guide's "freeze CNN/transformer")
FREEZABLE_PARTS = {
    "cnn": ("net.img_process.",),
    "transformer": ("net.recurrent_layer.",),
    "lastlayer": ("net.lastlayer.", "net.final_ln."),
    "goal": ("net.mineclip_embed_linear.",),
    "heads": ("pi_head.",),
}
# Behavioural cloning never trains the value head; freezing it also keeps DDP from waiting on its gradient.
ALWAYS_FROZEN = ("value_head.",)


def apply_freeze(policy: nn.Module, parts: list[str]) -> None:
    """Set requires_grad=False on the named parts (and the value head); everything else trains."""
    unknown = sorted(set(parts) - set(FREEZABLE_PARTS))
    if unknown:
        raise ValueError(f"--freeze: unknown part(s) {unknown}; choose from {sorted(FREEZABLE_PARTS)}")
    prefixes = ALWAYS_FROZEN + tuple(p for part in parts for p in FREEZABLE_PARTS[part])
    for name, param in policy.named_parameters():
        param.requires_grad_(not name.startswith(prefixes))


def trainable_summary(policy: nn.Module) -> list[str]:
    """Lines naming the trainable parameter groups (by top-level module) with their counts."""
    groups: dict[str, list[int]] = {}
    for name, param in policy.named_parameters():
        key = ".".join(name.split(".")[:2]) if name.startswith("net.") else name.split(".")[0]
        counts = groups.setdefault(key, [0, 0])
        counts[0 if param.requires_grad else 1] += param.numel()
    lines = [f"  {'trainable' if t else 'frozen   '} {key:32s} {t or f:>14,d}" for key, (t, f) in groups.items()]
    total_t = sum(t for t, _ in groups.values())
    total = sum(t + f for t, f in groups.values())
    lines.append(f"  trainable parameters: {total_t:,} of {total:,}")
    return lines


def make_optimizer(policy: nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (0.9, 0.999); decay on every weight except biases, LayerNorm and Embedding weights (as the original)."""
    no_decay_modules = (nn.LayerNorm, nn.Embedding)
    decay, no_decay = [], []
    for module_name, module in policy.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if param_name.endswith("bias") or isinstance(module, no_decay_modules):
                no_decay.append(param)
            else:
                decay.append(param)  # Linear/Conv weights, GroupNorm weights and b_nd, as in the original
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.999), fused=on_cuda or None)
