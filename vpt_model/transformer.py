"""VPT's recurrent transformer: clipped-causal self-attention with a KV cache and relative-position bias.

Per layer the recurrent state is ``(mask, K, V)``: ``mask`` (B, 1, M) bool marks which cached frames
may be attended to, ``K``/``V`` (B, M, D) are the post-projection keys and values of the last
``M = attention_memory_size - timesteps`` frames (128 for the released models). A chunk of ``t``
frames attends to the cache plus itself; every query sees itself and the ``M - 1`` frames before it.
``first`` is honoured at a chunk's first step only: it hides the whole cache (a new episode).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vpt_model.layers import NormedLayer

N_REL_BASIS = 10  # relative-position basis functions per head

LayerState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (mask, K, V)


def _fan_in_linear(in_features: int, out_features: int, scale: float, bias: bool = True) -> nn.Linear:
    """nn.Linear with VPT's normalised fan-in init (only matters when training from scratch)."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        layer.weight.mul_(scale / layer.weight.norm(dim=1, keepdim=True))
        if bias:
            layer.bias.zero_()
    return layer


class SelfAttentionLayer(nn.Module):
    """Multi-head attention over cache + chunk; logits scaled by 1/head_dim plus relative bias."""

    def __init__(self, hidsize: int, heads: int, maxlen: int, init_scale: float) -> None:
        super().__init__()
        if hidsize % heads:
            raise ValueError(f"hidsize {hidsize} is not divisible by attention_heads {heads}")
        self.heads = heads
        self.maxlen = maxlen
        s = math.sqrt(init_scale)
        self.q_layer = _fan_in_linear(hidsize, hidsize, 0.1)
        self.k_layer = _fan_in_linear(hidsize, hidsize, 0.2, bias=False)
        self.v_layer = _fan_in_linear(hidsize, hidsize, s, bias=False)
        self.proj_layer = _fan_in_linear(hidsize, hidsize, s)
        self.r_layer = _fan_in_linear(hidsize, N_REL_BASIS * heads, 0.1)
        self.b_nd = nn.Parameter(torch.randn(N_REL_BASIS, maxlen) * 0.2)

    def forward(self, x: torch.Tensor, first: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        """x (B, t, D), first (B, t) bool -> (x + attention(x), new state)."""
        b, t, d = x.shape
        h, m = self.heads, self.maxlen
        state_mask, state_k, state_v = state
        q = self.q_layer(x)
        k = torch.cat([state_k.to(x.dtype), self.k_layer(x)], dim=1)  # (B, M + t, D)
        v = torch.cat([state_v.to(x.dtype), self.v_layer(x)], dim=1)

        not_first = ~first[:, :1]  # (B, 1): only the chunk's first step counts
        cache_visible = state_mask[:, 0, :] & not_first  # (B, M)
        keys_visible = torch.cat([cache_visible, cache_visible.new_ones(b, t)], dim=1)  # (B, M + t)
        # Query i sits at key position M + i; it sees keys j with distance M + i - j in [0, M).
        qpos = torch.arange(t, device=x.device)[:, None] + m
        kpos = torch.arange(m + t, device=x.device)[None, :]
        distance = qpos - kpos  # (t, M + t)
        in_window = (distance >= 0) & (distance < m)
        visible = in_window[None] & keys_visible[:, None, :]  # (B, t, M + t)

        # Relative-position bias: coefficients R (B, h, t, 10) times b_nd (10, M) at each distance.
        r = self.r_layer(x).reshape(b, t, h, N_REL_BASIS).transpose(1, 2)
        rel = torch.matmul(r, self.b_nd.to(r.dtype))  # (B, h, t, M), indexed by distance
        rel = torch.gather(rel, 3, distance.clamp(0, m - 1).expand(b, h, t, m + t))
        bias = rel.masked_fill(~visible[:, None], float("-inf"))

        def heads_first(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, z.shape[1], h, d // h).transpose(1, 2)  # (B, h, len, d/h)

        attn = F.scaled_dot_product_attention(
            heads_first(q), heads_first(k), heads_first(v), attn_mask=bias.to(q.dtype), scale=h / d
        )
        attn = attn.transpose(1, 2).reshape(b, t, d)
        new_mask = torch.cat([state_mask[:, :, t:] & not_first[:, :, None], state_mask.new_ones(b, 1, min(t, m))], dim=2)
        # Contiguous copies: a view into k would give the next window's state other strides than
        # initial_state's, and torch.compile would compile the block a second time for them.
        new_state = (new_mask, k[:, -m:].contiguous(), v[:, -m:].contiguous())
        return x + self.proj_layer(attn), new_state


class UnmaskedSelfAttentionLayer(SelfAttentionLayer):
    """attention_mask_style "none" (VPT's IDM): every query sees every cached frame and every frame of the chunk.

    Future frames of the chunk included; the cache's mask and `first` are ignored, as in the original. The
    relative bias is b_nd at distances 0..M-1 and zero elsewhere (the original's banded matrix); with
    M = 0 (the IDM: memory 16, timesteps 16) nothing is cached and there is no bias.
    """

    def forward(self, x: torch.Tensor, first: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        """x (B, t, D), first (B, t) ignored -> (x + attention(x), new state)."""
        b, t, d = x.shape
        h, m = self.heads, self.maxlen
        state_mask, state_k, state_v = state
        q = self.q_layer(x)
        k = torch.cat([state_k.to(x.dtype), self.k_layer(x)], dim=1)  # (B, M + t, D)
        v = torch.cat([state_v.to(x.dtype), self.v_layer(x)], dim=1)
        bias = None
        if m:
            distance = torch.arange(t, device=x.device)[:, None] + m - torch.arange(m + t, device=x.device)[None, :]
            r = self.r_layer(x).reshape(b, t, h, N_REL_BASIS).transpose(1, 2)
            rel = torch.matmul(r, self.b_nd.to(r.dtype))  # (B, h, t, M), indexed by distance
            rel = torch.gather(rel, 3, distance.clamp(0, m - 1).expand(b, h, t, m + t))
            bias = rel.masked_fill(~((distance >= 0) & (distance < m)), 0.0).to(q.dtype)

        def heads_first(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, z.shape[1], h, d // h).transpose(1, 2)  # (B, h, len, d/h)

        attn = F.scaled_dot_product_attention(heads_first(q), heads_first(k), heads_first(v), attn_mask=bias, scale=h / d)
        attn = attn.transpose(1, 2).reshape(b, t, d)
        keep = k.shape[1] - m  # k[:, -m:] would keep everything when m == 0
        new_state = (state_mask.new_ones(b, 1, m), k[:, keep:], v[:, keep:])
        return x + self.proj_layer(attn), new_state


ATTENTION_MASK_STYLES = ("clipped_causal", "none")


class MaskedAttention(nn.Module):
    """Holds `orc_block` (the attention layer), as the original state dict names it."""

    def __init__(
        self, hidsize: int, heads: int, memory_size: int, timesteps: int, init_scale: float,
        mask_style: str = "clipped_causal",
    ) -> None:
        super().__init__()
        self.maxlen = memory_size - timesteps
        if mask_style == "none":
            if self.maxlen < 0:
                raise ValueError(f"attention_memory_size ({memory_size}) must be at least timesteps ({timesteps})")
            self.orc_block = UnmaskedSelfAttentionLayer(hidsize, heads, self.maxlen, init_scale)
            return
        if mask_style != "clipped_causal":
            raise ValueError(f"attention_mask_style {mask_style!r} is not one of {ATTENTION_MASK_STYLES}")
        if self.maxlen <= 0:
            raise ValueError(f"attention_memory_size ({memory_size}) must exceed timesteps ({timesteps})")
        self.orc_block = SelfAttentionLayer(hidsize, heads, self.maxlen, init_scale)

    def initial_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> LayerState:
        """Empty cache: nothing visible, zero keys and values."""
        d = self.orc_block.q_layer.in_features
        return (
            torch.zeros(batch_size, 1, self.maxlen, dtype=torch.bool, device=device),
            torch.zeros(batch_size, self.maxlen, d, dtype=dtype, device=device),
            torch.zeros(batch_size, self.maxlen, d, dtype=dtype, device=device),
        )

    def forward(self, x: torch.Tensor, first: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        return self.orc_block(x, first, state)


class ResidualRecurrentBlock(nn.Module):
    """h = pre_r_ln(x); y = h + attn(h); out = y + mlp1(mlp0(y)). The residual is on h, not x."""

    def __init__(
        self,
        hidsize: int,
        heads: int,
        memory_size: int,
        timesteps: int,
        pointwise_ratio: int,
        pointwise_use_activation: bool,
        init_scale: float,
        attention_mask_style: str = "clipped_causal",
    ) -> None:
        super().__init__()
        mlp_scale = init_scale * 2**-0.5  # second residual branch
        self.mlp0 = NormedLayer(hidsize, hidsize * pointwise_ratio, "linear", norm="layer")
        self.mlp1 = NormedLayer(
            hidsize * pointwise_ratio, hidsize, "linear", activation=pointwise_use_activation, init_scale=mlp_scale
        )
        self.pre_r_ln = nn.LayerNorm(hidsize)
        self.r = MaskedAttention(hidsize, heads, memory_size, timesteps, mlp_scale, attention_mask_style)

    def forward(self, x: torch.Tensor, first: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        y, state = self.r(self.pre_r_ln(x), first, state)
        return y + self.mlp1(self.mlp0(y)), state


class ResidualRecurrentBlocks(nn.Module):
    """The stack of transformer blocks (`recurrent_layer.blocks.N`)."""

    def __init__(
        self,
        n_block: int,
        hidsize: int,
        heads: int,
        memory_size: int,
        timesteps: int,
        pointwise_ratio: int,
        pointwise_use_activation: bool,
        attention_mask_style: str = "clipped_causal",
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                ResidualRecurrentBlock(
                    hidsize, heads, memory_size, timesteps, pointwise_ratio, pointwise_use_activation, n_block**-0.5,
                    attention_mask_style,
                )
                for _ in range(n_block)
            ]
        )

    def initial_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> list[LayerState]:
        return [block.r.initial_state(batch_size, device, dtype) for block in self.blocks]

    def forward(
        self, x: torch.Tensor, first: torch.Tensor, state: list[LayerState]
    ) -> tuple[torch.Tensor, list[LayerState]]:
        if len(state) != len(self.blocks):
            raise ValueError(f"state has {len(state)} layers, the model {len(self.blocks)}")
        new_state = []
        for block, layer_state in zip(self.blocks, state):
            x, layer_state = block(x, first, layer_state)
            new_state.append(layer_state)
        return x, new_state
