"""The STEVE-1 policy: the VPT policy plus a MineCLIP goal embedding added to the image features.

Same call convention as `vpt_model.policy`, with one more observation:
    obs["mineclip_embed"]: (B, T, 512) goal embedding per frame (zeros = unconditional)
"""

from __future__ import annotations

import torch
from torch import nn

from vpt_model.config import PolicyConfig
from vpt_model.policy import MinecraftAgentPolicy, MinecraftPolicy

GOAL_LAYER_KEYS = ("net.mineclip_embed_linear.weight", "net.mineclip_embed_linear.bias")


class GoalConditionedPolicy(MinecraftPolicy):
    """VPT trunk whose transformer input is image features + Linear(goal embedding) (no activation)."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__(config)
        self.mineclip_embed_linear = nn.Linear(config.mineclip_embed_dim, config.hidsize)

    def condition(self, x: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        goal = obs["mineclip_embed"]
        if goal.shape != (*x.shape[:2], self.config.mineclip_embed_dim):
            raise ValueError(
                f"obs['mineclip_embed'] must be (B, T, {self.config.mineclip_embed_dim}) to match the frames "
                f"{tuple(x.shape[:2])}, got {tuple(goal.shape)}"
            )
        return x + self.mineclip_embed_linear(goal.to(self.mineclip_embed_linear.weight.dtype))


class SteveAgentPolicy(MinecraftAgentPolicy):
    """STEVE-1: the VPT agent policy with the goal-conditioned trunk; weights load from steve1.weights."""

    net_class = GoalConditionedPolicy
