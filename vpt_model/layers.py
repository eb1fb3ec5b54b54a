"""The VPT "layer unit": norm on the input -> conv/linear -> ReLU, with VPT's fan-in init."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _KeepDtypeNorm:
    """Under autocast, return a bf16/fp16 input's dtype (statistics still in float32).

    Autocast runs norms in float32 and hands float32 on, doubling the memory traffic of the
    memory-bound CNN; float32 inputs take the plain path, so fp32 results are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return super().forward(x.float()).to(x.dtype)
        return super().forward(x)


class GroupNorm(_KeepDtypeNorm, nn.GroupNorm):
    """nn.GroupNorm (same parameters and keys) that keeps a low-precision input's dtype."""


class LayerNorm(_KeepDtypeNorm, nn.LayerNorm):
    """nn.LayerNorm (same parameters and keys) that keeps a low-precision input's dtype."""


class NormedLayer(nn.Module):
    """Norm on the INPUT, then a conv or linear layer, then (optionally) ReLU.

    The layer has a bias only when there is no norm. Attribute names (`norm`, `layer`) follow the
    original state dict (VPT's FanInInitReLULayer).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kind: str = "conv",
        norm: str | None = None,
        activation: bool = True,
        init_scale: float = 1.0,
        kernel_size: int | tuple[int, ...] = 3,
    ) -> None:
        super().__init__()
        if norm == "group":
            self.norm: nn.Module | None = GroupNorm(1, in_features)
        elif norm == "layer":
            self.norm = LayerNorm(in_features)
        elif norm is None:
            self.norm = None
        else:
            raise ValueError(f"unknown norm {norm!r} (expected 'group', 'layer' or None)")
        has_bias = self.norm is None
        if kind == "conv":
            self.layer: nn.Module = nn.Conv2d(
                in_features, out_features, kernel_size, padding=kernel_size // 2, bias=has_bias
            )
        elif kind == "linear":
            self.layer = nn.Linear(in_features, out_features, bias=has_bias)
        elif kind == "conv3d":  # the IDM's temporal convolution; "same" padding on every axis
            padding = tuple(k // 2 for k in kernel_size)  # type: ignore[union-attr]
            self.layer = nn.Conv3d(in_features, out_features, kernel_size, padding=padding, bias=has_bias)
        else:
            raise ValueError(f"unknown layer kind {kind!r} (expected 'conv', 'conv3d' or 'linear')")
        self.activation = activation
        with torch.no_grad():  # fan-in init: every output unit's weights get norm `init_scale`
            w = self.layer.weight
            w.mul_(init_scale / w.norm(dim=tuple(range(1, w.ndim)), p=2, keepdim=True))
            if has_bias:
                self.layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        x = self.layer(x)
        return F.relu(x) if self.activation else x
