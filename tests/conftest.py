"""Shared fixtures: tiny policies and small generated inputs (CPU only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from embed_conditioned_policy import SteveAgentPolicy
from vpt_model.config import preset

TEST_DATA = Path(__file__).parent / "data"


@pytest.fixture
def tiny_config():
    return preset("tiny")


@pytest.fixture
def tiny_policy(tiny_config):
    torch.manual_seed(0)
    policy = SteveAgentPolicy(tiny_config).eval()
    randomize_(policy)
    return policy


def randomize_(module: torch.nn.Module, scale: float = 0.05, seed: int = 1) -> None:
    """Perturb every float tensor so no weight is trivially 0 or 1 (norm affines, biases, buffers)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.dtype.is_floating_point:
                tensor.add_(scale * torch.randn(tensor.shape, generator=g))


def random_obs(batch: int, t: int, seed: int = 0, embed_dim: int = 512) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "img": torch.randint(0, 256, (batch, t, 128, 128, 3), generator=g, dtype=torch.uint8),
        "mineclip_embed": torch.randn(batch, t, embed_dim, generator=g),
    }
