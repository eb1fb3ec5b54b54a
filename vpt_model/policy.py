"""The VPT policy: image encoder -> recurrent transformer -> heads. Written once; STEVE-1 extends it.

Call convention (all tensors batch-first, T frames per call):
    pd, vpred, state = policy(obs, first, state)
    obs["img"]: (B, T, 128, 128, 3) uint8 or float in 0..255, RGB
    first:      (B, T) bool, True where an episode starts (only the first step of a call is used)
    state:      policy.initial_state(B) or the state returned by the previous call
    pd:         {"buttons": (B, T, 8641), "camera": (B, T, 121)} temperature-scaled log-probs
    vpred:      (B, T, 1) normalised value prediction
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpt_model.action_head import ActionHead
from vpt_model.config import PolicyConfig
from vpt_model.impala_cnn import ImpalaCNN
from vpt_model.layers import NormedLayer
from vpt_model.transformer import LayerState, ResidualRecurrentBlocks
from vpt_model.value_head import ValueHead

CNN_OUTSIZE = 256
PolicyState = list[LayerState]


class ImgObsProcess(nn.Module):
    """ImpalaCNN followed by a dense layer to hidsize (`net.img_process`)."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.cnn = ImpalaCNN(
            config.img_shape,
            config.cnn_channels,
            CNN_OUTSIZE,
            norm=config.conv_norm,
            first_conv_norm=config.first_conv_norm,
            post_pool_groups=config.impala_post_pool_groups,
        )
        dense_norm = "layer" if config.conv_norm else None
        self.linear = NormedLayer(CNN_OUTSIZE, config.hidsize, "linear", norm=dense_norm)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(img))


class MinecraftPolicy(nn.Module):
    """The trunk (`net`): frames (+ conditioning) -> latent (B, T, hidsize)."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        self.img_process = ImgObsProcess(config)
        self.pre_lstm_ln = nn.LayerNorm(config.hidsize) if config.use_pre_lstm_ln else None
        self.recurrent_layer = ResidualRecurrentBlocks(
            config.n_recurrence_layers,
            config.hidsize,
            config.attention_heads,
            config.attention_memory_size,
            config.timesteps,
            config.pointwise_ratio,
            config.pointwise_use_activation,
            config.attention_mask_style,
        )
        dense_norm = "layer" if config.conv_norm else None
        self.lastlayer = NormedLayer(config.hidsize, config.hidsize, "linear", norm=dense_norm)
        self.final_ln = nn.LayerNorm(config.hidsize)

    def encode_frames(self, img: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, 3) pixels in 0..255 -> (B, T, hidsize) image features."""
        if img.ndim != 5 or tuple(img.shape[2:]) != tuple(self.config.img_shape):
            raise ValueError(f"obs['img'] must be (B, T, {', '.join(map(str, self.config.img_shape))}), got {tuple(img.shape)}")
        return self.img_process(img.float() / 255.0)

    def condition(self, x: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hook for conditioning inputs added to the image features; plain VPT has none."""
        return x

    def forward(
        self, obs: dict[str, torch.Tensor], first: torch.Tensor, state: PolicyState
    ) -> tuple[torch.Tensor, PolicyState]:
        x = self.condition(self.encode_frames(obs["img"]), obs)
        if self.pre_lstm_ln is not None:
            x = self.pre_lstm_ln(x)
        x, state = self.recurrent_layer(x, first.bool(), state)
        x = self.lastlayer(F.relu(x))
        return self.final_ln(x), state

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> PolicyState:
        param = next(self.parameters())
        return self.recurrent_layer.initial_state(batch_size, device or param.device, param.dtype)


class MinecraftAgentPolicy(nn.Module):
    """VPT policy: `net` + `pi_head` (buttons, camera) + `value_head`."""

    net_class: type[MinecraftPolicy] = MinecraftPolicy

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        self.net = self.net_class(config)
        self.value_head = ValueHead(config.hidsize)
        self.pi_head = ActionHead(config.hidsize, config.temperature)

    def forward(
        self, obs: dict[str, torch.Tensor], first: torch.Tensor, state: PolicyState
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, PolicyState]:
        latent, state = self.net(obs, first, state)
        return self.pi_head(latent), self.value_head(latent), state

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> PolicyState:
        return self.net.initial_state(batch_size, device)


def detach_state(state: PolicyState) -> PolicyState:
    """Cut the graph between truncated-BPTT windows while keeping the cache's values."""
    return [tuple(s.detach() for s in layer) for layer in state]  # type: ignore[misc]
