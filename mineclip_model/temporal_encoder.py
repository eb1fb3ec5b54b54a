"""MineCLIP's `attn` temporal encoder: a 2-layer transformer over per-frame features, mean-pooled over time.

The original builds it with x-transformers 0.27.1 (`ContinuousTransformerWrapper(Encoder(dim=512,
depth=2, heads=8, ff_glu=True, ff_swish=True))`, max_seq_len 32). The module nesting below
(`attn.model.attn_layers.layers.N.{0.0,1}`) exists only so that the state-dict keys equal that
library's, and real checkpoints load without a renaming table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MINECLIP_CLIP_FRAMES = 16  # MineCLIP was trained on (and STEVE-1 embeds) clips of 16 frames
TEMPORAL_MAX_FRAMES = 32  # size of the learned position table
FF_MULT = 4


class AbsolutePositionalEmbedding(nn.Module):
    """Learned position table, scaled by 1/sqrt(dim) as x-transformers does."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.scale = dim**-0.5
        self.emb = nn.Embedding(max_len, dim)

    def forward(self, length: int) -> torch.Tensor:
        """Position vectors for positions 0..length-1 [length, dim]."""
        if length > self.emb.num_embeddings:
            raise ValueError(f"{length} frames exceed the temporal encoder's {self.emb.num_embeddings} positions")
        return self.emb.weight[:length] * self.scale


class TemporalAttention(nn.Module):
    """Bidirectional multi-head self-attention without projection biases."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over all frames of x [B, L, dim] (no mask)."""
        batch, length, _ = x.shape

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, -1).transpose(1, 2)  # (B, H, L, D)

        out = F.scaled_dot_product_attention(split_heads(self.to_q(x)), split_heads(self.to_k(x)), split_heads(self.to_v(x)))
        return self.to_out(out.transpose(1, 2).reshape(batch, length, -1))


class SwiGLU(nn.Module):
    """proj -> (value, gate) halves -> value * SiLU(gate)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gated projection of x [..., dim] -> [..., inner]."""
        value, gate = self.proj(x).chunk(2, dim=-1)  # first half value, second half gate
        return value * F.silu(gate)


class GLUFeedForward(nn.Module):
    """Feed-forward dim -> SwiGLU(dim * 4) -> dim."""

    def __init__(self, dim: int, mult: int = FF_MULT):
        super().__init__()
        inner = dim * mult
        # slots 1 and 2 are x-transformers' post-activation LayerNorm and dropout, both off in
        # MineCLIP; they stay as identities so the output layer keeps its key `net.3`
        self.net = nn.Sequential(SwiGLU(dim, inner), nn.Identity(), nn.Identity(), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the feed-forward to every frame."""
        return self.net(x)


class PreNormResidual(nn.ModuleList):
    """x + branch(LayerNorm(x)), stored as [[norm], branch] to keep x-transformers' keys (`N.0.0`, `N.1`)."""

    def __init__(self, dim: int, branch: nn.Module):
        super().__init__([nn.ModuleList([nn.LayerNorm(dim)]), branch])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the pre-normalised branch and add the residual."""
        norms, branch = self[0], self[1]
        return x + branch(norms[0](x))


class AttentionLayers(nn.Module):
    """Alternating attention and feed-forward layers (x-transformers' Encoder with pre-norm)."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers.append(PreNormResidual(dim, TemporalAttention(dim, heads, dim_head)))
            layers.append(PreNormResidual(dim, GLUFeedForward(dim)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run all layers on x [B, L, dim]."""
        for layer in self.layers:
            x = layer(x)
        return x


class ContinuousTransformer(nn.Module):
    """Position embedding -> attention layers -> final LayerNorm (x-transformers' ContinuousTransformerWrapper)."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, max_len: int):
        super().__init__()
        self.pos_emb = AbsolutePositionalEmbedding(dim, max_len)
        self.attn_layers = AttentionLayers(dim, depth, heads, dim_head)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sequence [B, L, dim] -> sequence [B, L, dim]."""
        x = x + self.pos_emb(x.shape[1])
        return self.norm(self.attn_layers(x))


class TemporalTransformer(nn.Module):
    """The transformer, then the mean over time."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, max_len: int):
        super().__init__()
        self.model = ContinuousTransformer(dim, depth, heads, dim_head, max_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Frame features [B, L, dim] -> one video feature [B, dim]."""
        return self.model(x).mean(dim=1)


class TemporalEncoder(nn.Module):
    """MineCLIP `attn` temporal pooling: per-frame features [B, L, dim] -> video feature [B, dim]."""

    def __init__(self, *, dim: int, depth: int, heads: int, dim_head: int, max_len: int = TEMPORAL_MAX_FRAMES):
        super().__init__()
        # the original's MLP before pooling is an identity for `attn` (adapter spec v0-2.t0)
        self.attn = TemporalTransformer(dim, depth, heads, dim_head, max_len)

    def forward(self, frame_features: torch.Tensor) -> torch.Tensor:
        """Frame features [B, L, dim] -> video feature [B, dim] (not normalised)."""
        if frame_features.dim() != 3:
            raise ValueError(f"frame features must be [B, L, dim], got {list(frame_features.shape)}")
        return self.attn(frame_features)
