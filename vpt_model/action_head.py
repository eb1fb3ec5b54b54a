"""The policy's action heads (joint buttons and camera) and what is done with their log-probs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpt_model.action_space import N_BUTTON_COMBOS, N_CAMERA_COMBOS

ACTION_KEYS = ("buttons", "camera")


class CategoricalHead(nn.Module):
    """Linear layer -> logits / temperature -> log_softmax (computed in float32)."""

    def __init__(self, in_features: int, num_actions: int, temperature: float) -> None:
        super().__init__()
        self.linear_layer = nn.Linear(in_features, num_actions)
        self.temperature = temperature
        with torch.no_grad():  # VPT's init: orthogonal, fan-in normalised to 0.01
            nn.init.orthogonal_(self.linear_layer.weight, gain=0.01)
            self.linear_layer.weight.mul_(0.01 / self.linear_layer.weight.norm(dim=1, keepdim=True))
            self.linear_layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear_layer(x) / self.temperature
        return F.log_softmax(logits.float(), dim=-1)


class ActionHead(nn.Module):
    """`pi_head`: one categorical head per joint action key."""

    def __init__(self, in_features: int, temperature: float) -> None:
        super().__init__()
        self.buttons = CategoricalHead(in_features, N_BUTTON_COMBOS, temperature)
        self.camera = CategoricalHead(in_features, N_CAMERA_COMBOS, temperature)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, T, D) -> {"buttons": (B, T, 8641), "camera": (B, T, 121)} log-probs."""
        return {"buttons": self.buttons(x), "camera": self.camera(x)}


def action_log_prob(pd: dict[str, torch.Tensor], actions: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(buttons) + log p(camera) of the taken joint actions, shape (B, T)."""
    return sum(pd[k].gather(-1, actions[k].long().unsqueeze(-1)).squeeze(-1) for k in ACTION_KEYS)


def sample_actions(
    pd: dict[str, torch.Tensor], deterministic: bool = False, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Argmax, or a Gumbel-max sample, of each head (log-probs need not be normalised)."""
    out = {}
    for key in ACTION_KEYS:
        logits = pd[key]
        if deterministic:
            out[key] = logits.argmax(dim=-1)
            continue
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        u = torch.where(u >= 1.0, torch.full_like(u, 0.999), u)  # low precision can round up to 1 -> +inf noise
        out[key] = (logits - torch.log(-torch.log(u))).argmax(dim=-1)
    return out


def classifier_free_guidance(
    cond: dict[str, torch.Tensor], uncond: dict[str, torch.Tensor], cond_scale: float
) -> dict[str, torch.Tensor]:
    """(1 + s) * cond - s * uncond on the heads' log-probs; s = 0 is the plain conditional policy."""
    return {k: (1.0 + cond_scale) * cond[k] - cond_scale * uncond[k] for k in ACTION_KEYS}
