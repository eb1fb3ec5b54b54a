"""MineCLIP's image encoder: a CLIP ViT-B/16 applied to each 160x256 Minecraft frame on its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mineclip_model.clip_transformer import LayerNorm, ResidualAttentionBlock

MINECLIP_FRAME_HEIGHT = 160
MINECLIP_FRAME_WIDTH = 256
RGB_CHANNELS = 3
PIXEL_MAX = 255.0
# MineCLIP's per-channel statistics (computed by its authors over 2.8M frames of 21K clips)
MINECLIP_IMAGE_MEAN = (0.3331, 0.3245, 0.3051)
MINECLIP_IMAGE_STD = (0.2439, 0.2493, 0.2873)


def check_frame_tensor(frames: torch.Tensor, height: int = MINECLIP_FRAME_HEIGHT, width: int = MINECLIP_FRAME_WIDTH) -> None:
    """Refuse anything that is not RGB frames [..., height, width, 3] (channels last)."""
    if not torch.is_tensor(frames):
        raise TypeError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
    if frames.dim() < 3 or tuple(frames.shape[-3:]) != (height, width, RGB_CHANNELS):
        hint = ""
        if frames.dim() >= 3 and frames.shape[-3] == RGB_CHANNELS:
            hint = " (this looks channels-first: MineCLIP frames are channels-last, permute to [..., H, W, 3])"
        raise ValueError(
            f"frames must have shape [..., {height}, {width}, {RGB_CHANNELS}] (RGB, height {height}, width "
            f"{width}, channels last), got {list(frames.shape)}{hint}; resize with "
            "mineclip_model.embedding.resize_frames_for_mineclip"
        )
    if frames.dtype != torch.uint8 and not frames.is_floating_point():
        raise TypeError(f"frames must be uint8 (0-255) or float (0-255 range), got {frames.dtype}")


def patchify(frames: torch.Tensor, patch_size: int, dtype: torch.dtype) -> torch.Tensor:
    """Frames [N, H, W, 3] -> patches [N, (H/p)(W/p), 3 p p] in raster order, columns ordered (channel, y, x)."""
    n, height, width, channels = frames.shape
    grid_h, grid_w = height // patch_size, width // patch_size
    x = frames.reshape(n, grid_h, patch_size, grid_w, patch_size, channels)
    # one strided copy that also casts: (N, gh, py, gw, px, c) -> (N, gh, gw, c, py, px)
    patches = torch.empty((n, grid_h, grid_w, channels, patch_size, patch_size), dtype=dtype, device=frames.device)
    patches.copy_(x.permute(0, 1, 3, 5, 2, 4))
    return patches.view(n, grid_h * grid_w, channels * patch_size * patch_size)


def _compute_dtype(device: torch.device, weight_dtype: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return weight_dtype


class ImageEncoder(nn.Module):
    """Vision transformer: 16x16 patches + class token -> pre-LN blocks -> ln_post(class token) @ projection.

    Input is raw RGB frames [N, 160, 256, 3] with values 0-255 (uint8 or float). The original
    divides by 255, normalises with MINECLIP_IMAGE_MEAN/STD and applies the patch convolution
    `conv1` (16x16, stride 16, no bias); here that affine normalisation is folded into the
    convolution's weights and bias, and the convolution runs as one matrix product over
    the patches (the same function: a strided conv ran at ~5% of an H100's peak).
    """

    def __init__(
        self,
        *,
        frame_height: int,
        frame_width: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        output_dim: int,
    ):
        super().__init__()
        if frame_height % patch_size or frame_width % patch_size:
            raise ValueError(f"frame {frame_height}x{frame_width} is not divisible by patch size {patch_size}")
        num_patches = (frame_height // patch_size) * (frame_width // patch_size)
        scale = width**-0.5
        # registration order = the original's state-dict order (parameters first, then submodules)
        self.cls_token = nn.Parameter(scale * torch.randn(width))
        self.pos_embed = nn.Parameter(scale * torch.randn(num_patches + 1, width))
        self.projection = nn.Parameter(scale * torch.randn(width, output_dim))
        self.conv1 = nn.Conv2d(RGB_CHANNELS, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.ln_pre = LayerNorm(width)
        self.blocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])
        self.ln_post = LayerNorm(width)
        self.patch_size = patch_size
        mean = torch.tensor(MINECLIP_IMAGE_MEAN, dtype=torch.float64)
        std = torch.tensor(MINECLIP_IMAGE_STD, dtype=torch.float64)
        patch_area = patch_size * patch_size
        # per column of the flattened conv weight (channel-major): x_norm = x * scale + shift
        pixel_scale = (1.0 / (PIXEL_MAX * std)).repeat_interleave(patch_area)
        pixel_shift = (-mean / std).repeat_interleave(patch_area)
        # constants, not weights: kept out of the state dict
        self.register_buffer("pixel_scale", pixel_scale.float(), persistent=False)
        self.register_buffer("pixel_shift", pixel_shift.float(), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """RGB frames [N, H, W, 3] (0-255) -> one feature vector per frame [N, output_dim]."""
        weight = self.conv1.weight.flatten(1)  # (W, 3 p p)
        patches = patchify(frames, self.patch_size, _compute_dtype(frames.device, weight.dtype))  # (N, P, 3 p p)
        # conv1(normalise(x)) = x @ (weight * scale)^T + weight @ shift
        x = F.linear(patches, weight * self.pixel_scale, weight @ self.pixel_shift)  # (N, P, W)
        # the residual stream stays in the compute dtype (float16 under autocast, as OpenAI's CLIP
        # runs), halving its memory traffic; the original promotes it to float32 here
        cls = self.cls_token.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed.to(x.dtype)  # (N, P + 1, W)
        x = self.blocks(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.projection  # (N, output_dim)
