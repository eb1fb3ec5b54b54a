"""Behavioural-cloning loss of the policy on one truncated-BPTT window."""

from __future__ import annotations

import torch
from torch import nn

from vpt_model.action_head import action_log_prob
from vpt_model.policy import PolicyState


def window_nll(
    policy: nn.Module, batch: dict[str, torch.Tensor], state: PolicyState
) -> tuple[torch.Tensor, dict[str, torch.Tensor], PolicyState]:
    """-(log p(buttons) + log p(camera)) summed over the window's frames, per sample: (B,).

    `batch` holds one window: img (B, t, H, W, 3), mineclip_embed (B, t, 512), buttons/camera (B, t) joint
    indices, firsts (B, t) bool. Also returns the action distributions (log-probabilities, (B, t, 8641) and
    (B, t, 121)) and the state after the window (not detached).
    """
    obs = {"img": batch["img"], "mineclip_embed": batch["mineclip_embed"]}
    pd, _, state = policy(obs, batch["firsts"], state)
    log_prob = action_log_prob(pd, {"buttons": batch["buttons"], "camera": batch["camera"]})  # (B, t)
    return -log_prob.sum(dim=1), pd, state


def bc_window_loss(
    policy: nn.Module, batch: dict[str, torch.Tensor], state: PolicyState, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, PolicyState]:
    """The window's NLL summed over frames, mean over the batch (as the original), and the state after it.

    `valid` (B,) bool leaves samples out of the mean (ones that could not be read); None: all count.
    """
    nll, _, state = window_nll(policy, batch, state)
    if valid is None:
        return nll.mean(), state
    return torch.where(valid, nll, 0.0).sum() / valid.sum().clamp(min=1), state


def split_windows(batch: dict[str, torch.Tensor], trunc_t: int) -> list[dict[str, torch.Tensor]]:
    """Cut (B, T, ...) tensors into T / trunc_t consecutive windows along time."""
    length = batch["firsts"].shape[1]
    return [{k: v[:, start : start + trunc_t] for k, v in batch.items()} for start in range(0, length, trunc_t)]
