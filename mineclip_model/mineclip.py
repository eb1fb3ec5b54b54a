"""MineCLIP (`attn` variant): the model, its configuration, and reading/writing the original `attn.pth`.

Checkpoint layout of the original: `torch.load(path)["state_dict"]`
holds 788 tensors named `model.<key>`. The vision tower is stored three times
(`image_encoder.*`, `clip_model.vision_model.*`, `reward_head.clip_model.vision_model.*`) and the
text tower and logit scale twice (`clip_model.*`, `reward_head.clip_model.*`): in the original
these are the same modules reached by several paths. This module keeps one copy of each
(`MineCLIP.state_dict()`: the "canonical" keys) and maps the aliases onto it when reading and
writing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from toolkit_utils.file_hashes import file_md5
from toolkit_utils.atomic_files import atomic_torch_save
from toolkit_utils.safe_load import load_tensors_only
from toolkit_utils.state_dicts import describe_value

from mineclip_model.image_encoder import (
    MINECLIP_FRAME_HEIGHT,
    MINECLIP_FRAME_WIDTH,
    ImageEncoder,
    check_frame_tensor,
)
from mineclip_model.temporal_encoder import MINECLIP_CLIP_FRAMES, TEMPORAL_MAX_FRAMES, TemporalEncoder
from mineclip_model.text_encoder import CLIP_CONTEXT_LENGTH, CLIP_VOCAB_SIZE, ClipModel, RewardHead, TextEncoder

ATTN_PTH_MD5 = "b5ece9198337cfd117a3bfbd921e56da"
CHECKPOINT_PREFIX = "model."


@dataclass(frozen=True)
class MineCLIPConfig:
    """Sizes of a MineCLIP model; `attn()` is the released checkpoint, `tiny()` a fast test model."""

    frame_height: int = MINECLIP_FRAME_HEIGHT
    frame_width: int = MINECLIP_FRAME_WIDTH
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    embed_dim: int = 512  # image, video and text features
    temporal_depth: int = 2
    temporal_heads: int = 8
    temporal_dim_head: int = 64
    temporal_max_frames: int = TEMPORAL_MAX_FRAMES
    context_length: int = CLIP_CONTEXT_LENGTH
    vocab_size: int = CLIP_VOCAB_SIZE
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8

    @classmethod
    def attn(cls) -> MineCLIPConfig:
        """The released `attn.pth` (ViT-B/16 on 160x256, 2-layer temporal transformer, CLIP text)."""
        return cls()

    @classmethod
    def tiny(cls) -> MineCLIPConfig:
        """A few-layer, narrow model with the same interfaces (frames 160x256, 77 tokens) for tests."""
        return cls(
            patch_size=32,
            vision_width=64,
            vision_layers=2,
            vision_heads=2,
            embed_dim=32,
            temporal_depth=2,
            temporal_heads=2,
            temporal_dim_head=16,
            text_width=32,
            text_layers=2,
            text_heads=2,
        )


class MineCLIP(nn.Module):
    """MineCLIP `attn`: per-frame ViT features, a temporal transformer over them, CLIP text features.

    Frames are RGB, channels last, 160x256, uint8 (or float with values 0-255).
    """

    def __init__(self, config: MineCLIPConfig | None = None):
        super().__init__()
        self.config = config = config or MineCLIPConfig.attn()
        self.image_encoder = ImageEncoder(
            frame_height=config.frame_height,
            frame_width=config.frame_width,
            patch_size=config.patch_size,
            width=config.vision_width,
            layers=config.vision_layers,
            heads=config.vision_heads,
            output_dim=config.embed_dim,
        )
        self.temporal_encoder = TemporalEncoder(
            dim=config.embed_dim,
            depth=config.temporal_depth,
            heads=config.temporal_heads,
            dim_head=config.temporal_dim_head,
            max_len=config.temporal_max_frames,
        )
        self.reward_head = RewardHead(config.embed_dim)
        self.clip_model = ClipModel(
            TextEncoder(
                vocab_size=config.vocab_size,
                context_length=config.context_length,
                width=config.text_width,
                layers=config.text_layers,
                heads=config.text_heads,
                output_dim=config.embed_dim,
            )
        )

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-frame image features: frames [..., 160, 256, 3] -> [..., embed_dim]."""
        check_frame_tensor(frames, self.config.frame_height, self.config.frame_width)
        leading = frames.shape[:-3]
        features = self.image_encoder(frames.reshape(-1, *frames.shape[-3:]))
        return features.view(*leading, features.shape[-1])

    def encode_video_features(self, frame_features: torch.Tensor) -> torch.Tensor:
        """Video features from per-frame features [B, L, embed_dim] -> [B, embed_dim] (not normalised)."""
        return self.temporal_encoder(frame_features)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Video features of clips [B, 16, 160, 256, 3] -> [B, embed_dim].

        This is STEVE-1's goal embedding (`MineCLIP.encode_video` of the original): temporal
        encoder output, no video adapter, not normalised.
        """
        if frames.dim() != 5 or frames.shape[1] != MINECLIP_CLIP_FRAMES:
            raise ValueError(
                f"clips must be [B, {MINECLIP_CLIP_FRAMES}, {self.config.frame_height}, {self.config.frame_width}, 3], "
                f"got {list(frames.shape)}"
            )
        return self.encode_video_features(self.encode_frames(frames))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text features of token ids [B, 77] (see mineclip_model.tokenizer) -> [B, embed_dim] (not normalised)."""
        return self.clip_model.text_model(tokens)

    def forward_reward_head(
        self, video_features: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MineCLIP's text-video scores: (logits_per_video [Bv, Bt], logits_per_text [Bt, Bv]).

        `text` is token ids [Bt, 77] or text features [Bt, embed_dim]. The video features pass
        through the video adapter; the text side has no adapter in `attn`.
        """
        text_features = self.encode_text(text) if text.dtype == torch.long else text
        logits_per_video = self.clip_model.logits(self.reward_head(video_features), text_features)
        return logits_per_video, logits_per_video.t()


def original_layout(model: MineCLIP) -> dict[str, str]:
    """Key of the original checkpoint (without `model.`) -> canonical key of `model`, in the original's order."""
    canonical = list(model.state_dict().keys())

    def under(prefix: str) -> list[str]:
        return [k for k in canonical if k.startswith(prefix)]

    layout: dict[str, str] = {}
    for key in under("image_encoder.") + under("temporal_encoder."):
        layout[key] = key

    def clip_model_under(prefix: str) -> None:
        # the original CLIP module: logit_scale, vision_model (= image_encoder), text_model
        layout[prefix + "logit_scale"] = "clip_model.logit_scale"
        for key in under("image_encoder."):
            layout[prefix + "vision_model." + key.removeprefix("image_encoder.")] = key
        for key in under("clip_model.text_model."):
            layout[prefix + key.removeprefix("clip_model.")] = key

    layout["reward_head.video_residual_weight"] = "reward_head.video_residual_weight"
    clip_model_under("reward_head.clip_model.")
    for key in under("reward_head.video_adapter."):
        layout[key] = key
    clip_model_under("clip_model.")
    return layout


def load_original_state_dict(model: MineCLIP, state_dict: Mapping[str, torch.Tensor], shown_prefix: str = "") -> None:
    """Load tensors named as in the original (no `model.` prefix) strictly; alias copies must be equal.

    All problems of names and shapes are collected and raised together as one ValueError
    that names every offending key (written with `shown_prefix`, e.g. as they appear in the file).
    """
    layout = original_layout(model)
    own = model.state_dict()
    not_tensors = [shown_prefix + k for k, v in state_dict.items() if not torch.is_tensor(v)]
    if not_tensors:
        raise ValueError(f"checkpoint entries that are not tensors: {', '.join(not_tensors)}")
    missing = [shown_prefix + k for k in layout if k not in state_dict]
    unexpected = [shown_prefix + k for k in state_dict if k not in layout]
    wrong_shape = [
        f"{shown_prefix}{k}: file {tuple(v.shape)}, model {tuple(own[layout[k]].shape)}"
        for k, v in state_dict.items()
        if k in layout and tuple(v.shape) != tuple(own[layout[k]].shape)
    ]
    if missing or unexpected or wrong_shape:
        problems = []
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong_shape)):
            if keys:
                problems.append(f"{title} ({len(keys)}):\n  " + "\n  ".join(keys))
        raise ValueError(
            "checkpoint does not match MineCLIP "
            f"(embed_dim {model.config.embed_dim}, vision {model.config.vision_layers}x{model.config.vision_width}):\n"
            + "\n".join(problems)
        )

    canonical_values: dict[str, torch.Tensor] = {}
    first_name: dict[str, str] = {}
    for key, canonical in layout.items():
        value = state_dict[key]
        if canonical not in canonical_values:
            canonical_values[canonical], first_name[canonical] = value, key
        elif not torch.equal(value, canonical_values[canonical]):
            raise ValueError(
                f"alias copy {shown_prefix + key!r} differs from {shown_prefix + first_name[canonical]!r}: the original stores these as one "
                "tensor under several names, so the file is corrupt or was edited"
            )
    model.load_state_dict(canonical_values, strict=True)


def original_state_dict(model: MineCLIP) -> dict[str, torch.Tensor]:
    """All 788 tensors (for the `attn` config) named as in the original's `state_dict` (with `model.`), aliases shared."""
    own = {k: v.detach() for k, v in model.state_dict().items()}
    return {CHECKPOINT_PREFIX + key: own[canonical] for key, canonical in original_layout(model).items()}


def save_mineclip(model: MineCLIP, path: str | os.PathLike) -> None:
    """Write `model` as the original `attn.pth` layout: {"state_dict": {"model.<key>": tensor}}."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # alias names keep pointing at one tensor, so torch.save writes each storage once (as the original)
    on_cpu: dict[int, torch.Tensor] = {}
    state = {}
    for key, value in original_state_dict(model).items():
        if id(value) not in on_cpu:
            on_cpu[id(value)] = value.cpu()
        state[key] = on_cpu[id(value)]
    atomic_torch_save({"state_dict": state}, path)


def load_mineclip(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    check_md5: bool = False,
    config: MineCLIPConfig | None = None,
) -> MineCLIP:
    """Build MineCLIP and load the original `attn.pth` (or a file written by save_mineclip); eval mode, float32."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"MineCLIP checkpoint not found: {path} (download attn.pth from the link in the STEVE-1 README "
            "into data/weights/mineclip/)"
        )
    if check_md5:
        digest = file_md5(path)
        if digest != ATTN_PTH_MD5:
            raise ValueError(
                f"{path}: md5 {digest} differs from the released attn.pth ({ATTN_PTH_MD5}); the download is "
                "incomplete or this is another file. Download it again, or pass check_md5=False for your own weights"
            )
    checkpoint = load_tensors_only(path)  # a file that is not loadable weights: one line saying what it is
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("state_dict"), Mapping):
        kind = (f"a dict with keys {', '.join(map(repr, list(checkpoint)[:5]))}" if isinstance(checkpoint, Mapping)
                else describe_value(checkpoint))
        raise ValueError(f"{path}: holds {kind}, not a MineCLIP checkpoint (a dict with a 'state_dict' dict of tensors)")
    state: dict[str, torch.Tensor] = {}
    foreign = []
    for key, value in checkpoint["state_dict"].items():
        if key.startswith(CHECKPOINT_PREFIX):
            state[key.removeprefix(CHECKPOINT_PREFIX)] = value
        else:
            foreign.append(key)
    if foreign:
        raise ValueError(f"{path}: unexpected keys without the {CHECKPOINT_PREFIX!r} prefix: {', '.join(foreign)}")
    model = MineCLIP(config)
    try:
        load_original_state_dict(model, state, shown_prefix=CHECKPOINT_PREFIX)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return model.to(device).eval()
