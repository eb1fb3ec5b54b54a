"""VPT's value head: a linear layer whose output lives in a space normalised by EWMA statistics."""

from __future__ import annotations

import torch
from torch import nn

_EPS = 1e-5
_MIN_VAR = 1e-2


class EwmaNormalizer(nn.Module):
    """Running (debiased) mean and mean-square of the value targets; kept for weight compatibility."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(size))
        self.register_buffer("running_mean_sq", torch.zeros(size))
        self.register_buffer("debiasing_term", torch.tensor(0.0))

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        debias = self.debiasing_term.clamp(min=_EPS)
        mean = self.running_mean / debias
        var = (self.running_mean_sq / debias - mean**2).clamp(min=_MIN_VAR)
        return mean, var

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mean_var()
        return x * torch.sqrt(var) + mean


class ValueHead(nn.Module):
    """`value_head`: Linear(hidsize -> 1) plus its normaliser (unused for behavioural cloning)."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 1)
        self.normalizer = EwmaNormalizer(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised value prediction, (B, T, 1)."""
        return self.linear(x)

    def denormalize(self, v: torch.Tensor) -> torch.Tensor:
        return self.normalizer.denormalize(v)
