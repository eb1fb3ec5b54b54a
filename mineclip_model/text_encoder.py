"""MineCLIP's text side: the CLIP text transformer, the logit scale and the video adapter of its score head."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mineclip_model.clip_transformer import LayerNorm, ResidualAttentionBlock

CLIP_CONTEXT_LENGTH = 77
CLIP_VOCAB_SIZE = 49408
CLIP_INIT_TEMPERATURE = 0.07  # logit_scale starts at log(1 / 0.07), as in CLIP
ADAPTER_RESIDUAL_INIT = 4.0  # sigmoid(4) ~ 0.98: the adapters start close to the identity


class TextEncoder(nn.Module):
    """CLIP text transformer: token + position embeddings -> causal pre-LN blocks -> ln_final -> projection.

    The sentence feature is the token at the highest id of each row, i.e. the end-of-text token
    49407 (padding is 0), projected to `output_dim`.
    """

    def __init__(self, *, vocab_size: int, context_length: int, width: int, layers: int, heads: int, output_dim: int):
        super().__init__()
        self.context_length = context_length
        # registration order = the original's state-dict order (parameters first, then submodules)
        self.pos_embed = nn.Parameter(0.01 * torch.randn(context_length, width))
        self.projection = nn.Parameter(width**-0.5 * torch.randn(width, output_dim))
        self.token_embedding = nn.Embedding(vocab_size, width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.blocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, causal=True) for _ in range(layers)])
        self.ln_final = LayerNorm(width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [B, context_length] (int64) -> text features [B, output_dim] (not normalised)."""
        if tokens.dim() != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(f"tokens must be [B, {self.context_length}], got {list(tokens.shape)}")
        if tokens.dtype != torch.long:
            raise TypeError(f"tokens must be int64 token ids, got {tokens.dtype}")
        x = self.token_embedding(tokens) + self.pos_embed  # (B, 77, W)
        x = self.ln_final(self.blocks(x))
        eot = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]  # (B, W)
        return eot @ self.projection


class ClipModel(nn.Module):
    """The original's `clip_model` minus its vision tower: the text transformer and the logit scale.

    (The vision tower is `MineCLIP.image_encoder`; checkpoints store it again under
    `clip_model.vision_model`, see mineclip_model.mineclip.)
    """

    def __init__(self, text_model: TextEncoder):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / CLIP_INIT_TEMPERATURE)))
        self.text_model = text_model

    def logits(self, video_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities [B_video, B_text]: exp(logit_scale) * <v/|v|, t/|t|>."""
        video = F.normalize(video_features, dim=-1)
        text = F.normalize(text_features, dim=-1)
        return self.logit_scale.exp() * video @ text.t()


class RewardHead(nn.Module):
    """The video adapter of MineCLIP's CLIPScoreHead: sigmoid(w) * v + (1 - sigmoid(w)) * MLP(v).

    MLP = Linear -> ReLU -> Linear (adapter spec `v0-2.t0`: 2 video-adapter layers, no text
    adapter). Used only for text-video scores; STEVE-1's goal embedding does not pass through it.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.video_residual_weight = nn.Parameter(torch.tensor(ADAPTER_RESIDUAL_INIT))
        # slot 1 is the original MLP builder's (absent) norm layer; kept so the keys are .0 and .3
        self.video_adapter = nn.Sequential(nn.Linear(dim, dim), nn.Identity(), nn.ReLU(), nn.Linear(dim, dim))
        for layer in (self.video_adapter[0], self.video_adapter[3]):
            nn.init.orthogonal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, video_features: torch.Tensor) -> torch.Tensor:
        """Adapted video features [B, dim]."""
        res = torch.sigmoid(self.video_residual_weight)
        return res * video_features + (1.0 - res) * self.video_adapter(video_features)
