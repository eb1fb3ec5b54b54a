"""ImpalaCNN image encoder of VPT (attribute names follow the original state dict)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vpt_model.layers import GroupNorm, NormedLayer


class CnnBasicBlock(nn.Module):
    """Residual block x + conv1(conv0(x)); shape preserving."""

    def __init__(self, channels: int, norm: str | None, init_scale: float) -> None:
        super().__init__()
        s = math.sqrt(init_scale)
        self.conv0 = NormedLayer(channels, channels, "conv", norm=norm, init_scale=s)
        self.conv1 = NormedLayer(channels, channels, "conv", norm=norm, init_scale=s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(self.conv0(x))


class CnnDownStack(nn.Module):
    """firstconv -> 3x3/2 max-pool -> GroupNorm `n` -> residual blocks; halves the spatial size.

    The firstconv's ReLU runs after the max-pool: relu(max(a)) == max(relu(a)) exactly, gradients
    included (the same element wins each window), and the pooled tensor is a quarter of the size, so
    backward keeps a quarter-size ReLU mask instead of a full-size one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        nblock: int,
        norm: str | None,
        first_conv_norm: bool,
        post_pool_groups: int | None,
        init_scale: float,
    ) -> None:
        super().__init__()
        self.firstconv = NormedLayer(
            in_channels, out_channels, "conv", norm=norm if first_conv_norm else None, activation=False
        )
        self.n = GroupNorm(post_pool_groups, out_channels) if post_pool_groups is not None else None
        self.blocks = nn.ModuleList(
            [CnnBasicBlock(out_channels, norm, init_scale / math.sqrt(nblock)) for _ in range(nblock)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.firstconv(x)
        x = F.relu(F.max_pool2d(x, kernel_size=3, stride=2, padding=1))
        if self.n is not None:
            x = self.n(x)
        for block in self.blocks:
            x = block(x)
        return x


class ImpalaCNN(nn.Module):
    """Stacks of CnnDownStack, flattened channel-major (C, H, W), then the `dense` layer."""

    def __init__(
        self,
        img_shape: tuple[int, int, int],
        chans: tuple[int, ...],
        outsize: int,
        nblock: int = 2,
        norm: str | None = "group",
        first_conv_norm: bool = False,
        post_pool_groups: int | None = 1,
    ) -> None:
        super().__init__()
        height, width, channels = img_shape
        self.stacks = nn.ModuleList()
        for i, out_channels in enumerate(chans):
            self.stacks.append(
                CnnDownStack(
                    channels,
                    out_channels,
                    nblock,
                    norm,
                    first_conv_norm=first_conv_norm if i == 0 else True,
                    post_pool_groups=post_pool_groups,
                    init_scale=math.sqrt(len(chans)),
                )
            )
            channels, height, width = out_channels, (height + 1) // 2, (width + 1) // 2
        dense_norm = "layer" if norm is not None else None
        self.dense = NormedLayer(channels * height * width, outsize, "linear", norm=dense_norm, init_scale=1.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) float images in [0, 1] -> (B, T, outsize)."""
        b, t = x.shape[:2]
        x = x.reshape(b * t, *x.shape[2:]).permute(0, 3, 1, 2)  # (B*T, C, H, W)
        for stack in self.stacks:
            x = stack(x)
        x = x.reshape(b, t, -1)  # channel-major flatten, as the original
        return self.dense(x)
