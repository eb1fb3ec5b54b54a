"""The VPT "layer unit": norm on the input -> conv/linear -> ReLU, with VPT's fan-in init."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# PyTorch's CUDA group/layer norm kernels give each row (sample x group) one thread block: with a few
# long rows (acting: 2 frames of 128x64x64) one block reduces half a million elements and the step waits
# for it. Below this many rows, CUDA inputs use torch.var_mean, which spreads a row over many blocks.
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
        if x.is_cuda and self.num_groups == 1 and self.affine and x.shape[0] < FEW_ROWS:
            affine_shape = (-1,) + (1,) * (x.ndim - 2)
            return normalize_rows(x, x.shape[0], self.weight.reshape(affine_shape), self.bias.reshape(affine_shape), self.eps,
                                  (x.shape[0],) + (1,) * (x.ndim - 1))
        return super()._normalize(x)


class LayerNorm(_KeepDtypeNorm, nn.LayerNorm):
    """nn.LayerNorm (same parameters and keys) that keeps a low-precision input's dtype."""

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        if x.is_cuda and len(self.normalized_shape) == 1 and self.elementwise_affine and self.bias is not None \
                and size >= LONG_ROW and x.numel() // size < FEW_ROWS:
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
        kernel_size: int = 3,
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
        else:
            raise ValueError(f"unknown layer kind {kind!r} (expected 'conv' or 'linear')")
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


def max_pool_3x3_s2(x: torch.Tensor) -> torch.Tensor:
    """F.max_pool2d(x, 3, stride=2, padding=1) of a (N, C, H, W) tensor, written for torch.compile.

    Same values and the same gradients: each window's gradient goes to its first largest element in
    row-major window order, a NaN wins (as PyTorch's CUDA kernel does). Made for the compiled CNN: the
    output and the input gradient are channels-last (the layout the compiled convolutions use, so no
    layout copy follows and every access is coalesced) and backward keeps one int8 window position per
    output (PyTorch's CUDA kernel keeps int64 indices: 8x the memory). In eager mode it launches more
    kernels than F.max_pool2d; it matches it, only faster once compiled. Only an all -inf window
    differs: its gradient goes to the window centre instead of its first element.
    """
    return _MaxPool3x3S2.apply(x)


def _window_candidates(x: torch.Tensor) -> tuple[list[torch.Tensor], int, int]:
    """The 9 strided views (row-major window order) of x padded with -inf, each (N, C, ceil(H/2), ceil(W/2))."""
    h, w = x.shape[-2:]
    ho, wo = (h + 1) // 2, (w + 1) // 2
    padded = F.pad(x, (1, 2 * wo - w, 1, 2 * ho - h), value=float("-inf"))
    views = [padded[:, :, dy : dy + 2 * ho : 2, dx : dx + 2 * wo : 2] for dy in range(3) for dx in range(3)]
    return views, ho, wo


class _MaxPool3x3S2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        views, _, _ = _window_candidates(x)
        best = torch.full_like(views[4], float("-inf"))
        position = torch.full(best.shape, 4, dtype=torch.int8, device=x.device)  # the centre is never padding
        for k, view in enumerate(views):
            take = (view > best) | view.isnan()
            best = torch.where(take, view, best)
            position = torch.where(take, k, position)
        ctx.save_for_backward(position)
        ctx.input_hw = tuple(x.shape[-2:])
        return best.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (position,) = ctx.saved_tensors
        h, w = ctx.input_hw
        n, c, ho, wo = grad.shape
        g = grad.float()
        part = [torch.where(position == k, g, 0.0) for k in range(9)]  # part[3 * dy + dx]: to input (2i+dy-1, 2j+dx-1)

        def next_row(t: torch.Tensor) -> torch.Tensor:  # t[i + 1, j], zero past the end
            return F.pad(t[:, :, 1:], (0, 0, 0, 1))

        def next_col(t: torch.Tensor) -> torch.Tensor:  # t[i, j + 1]
            return F.pad(t[..., 1:], (0, 1))

        def channels_last_view(t: torch.Tensor) -> torch.Tensor:  # (N, C, ho, wo) -> (N, ho, wo, C), in grad's dtype
            return t.to(grad.dtype).permute(0, 2, 3, 1)

        even_even = part[4]  # to input (2i, 2j)
        even_odd = part[5] + next_col(part[3])  # to input (2i, 2j + 1)
        odd_even = part[7] + next_row(part[1])  # to input (2i + 1, 2j)
        odd_odd = part[8] + next_col(part[6]) + next_row(part[2]) + next_row(next_col(part[0]))
        # (N, ho, 2, wo, 2, C) in memory order is the channels-last (N, C, 2 ho, 2 wo): one write, no layout copy.
        rows = torch.stack([
            torch.stack([channels_last_view(even_even), channels_last_view(even_odd)], 3),
            torch.stack([channels_last_view(odd_even), channels_last_view(odd_odd)], 3),
        ], 2)
        grad_in = rows.reshape(n, 2 * ho, 2 * wo, c)[:, :h, :w].permute(0, 3, 1, 2)
        return grad_in.contiguous(memory_format=torch.channels_last)  # a no-op for even H and W
