"""The VPT "layer unit": norm on the input -> conv/linear -> ReLU, with VPT's fan-in init."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# PyTorch's CUDA group/layer norm kernels give each row (sample x group) one thread block: with a few
# long rows (acting: 2 frames of 128x64x64) one block reduces half a million elements and the step waits
# for it (2.2 of 4 ms per agent step on an H200). While a CUDA graph is captured (vpt_model/fast_acting.py)
# and there are fewer rows than this, the norms use torch.var_mean, which spreads a row over many blocks.
# Eager calls keep the native kernels (fewer launches), and so does everything else.
FEW_ROWS = 32
LONG_ROW = 16384


class _KeepDtypeNorm:
    """Under autocast, return a bf16/fp16 input's dtype (statistics still in float32).

    Autocast runs norms in float32 and hands float32 on, doubling the memory traffic of the
    memory-bound CNN; float32 inputs take the plain path, so fp32 results are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self._normalize(x.float()).to(x.dtype)
        return self._normalize(x)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


def normalize_rows(
    x: torch.Tensor, num_rows: int, weight: torch.Tensor, bias: torch.Tensor, eps: float, stat_shape: tuple[int, ...]
) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias with (biased) statistics over each of `num_rows` equal parts of x.

    stat_shape: how the per-row statistics broadcast against x ((N, 1, 1, 1) for GroupNorm(1, C) of
    (N, C, H, W); x.shape[:-1] + (1,) for a LayerNorm of the last dim); weight and bias broadcast against x.
    Equals F.group_norm / F.layer_norm up to float rounding.
    """
    var, mean = torch.var_mean(x.reshape(num_rows, -1), dim=1, correction=0)
    rstd = torch.rsqrt(var + eps).reshape(stat_shape)
    return (x - mean.reshape(stat_shape)) * rstd * weight + bias


class GroupNorm(_KeepDtypeNorm, nn.GroupNorm):
    """nn.GroupNorm (same parameters and keys) that keeps a low-precision input's dtype."""

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda and x.shape[0] < FEW_ROWS and self.num_groups == 1 and self.affine \
                and torch.cuda.is_current_stream_capturing():
            affine_shape = (-1,) + (1,) * (x.ndim - 2)
            return normalize_rows(x, x.shape[0], self.weight.reshape(affine_shape), self.bias.reshape(affine_shape), self.eps,
                                  (x.shape[0],) + (1,) * (x.ndim - 1))
        return super()._normalize(x)


class LayerNorm(_KeepDtypeNorm, nn.LayerNorm):
    """nn.LayerNorm (same parameters and keys) that keeps a low-precision input's dtype."""

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        if x.is_cuda and size >= LONG_ROW and x.numel() // size < FEW_ROWS and len(self.normalized_shape) == 1 \
                and self.elementwise_affine and self.bias is not None and torch.cuda.is_current_stream_capturing():
            return normalize_rows(x, x.numel() // size, self.weight, self.bias, self.eps, (*x.shape[:-1], 1))
        return super()._normalize(x)


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
