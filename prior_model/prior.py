"""The STEVE-1 prior: a conditional VAE that turns a MineCLIP text embedding into a visual goal embedding.

The module layout (and so the state-dict keys) follows the original STEVE-1 `TranslatorVAE`, so the
released `steve1_prior.pt` loads as it is:

    encoder: Linear(2E, H) - LayerNorm(H) - ReLU - Linear(H, H) - LayerNorm(H) - ReLU - Linear(H, 2L)
             on concat(visual, text); output split as (mean, logvar) = first L, last L
    decoder: Linear(L + E, H) - LayerNorm(H) - ReLU - Linear(H, H) - LayerNorm(H) - ReLU - Linear(H, E)
             on concat(z, text)

Keys: `encoder.{0,1,3,4,6}.{weight,bias}` and `decoder.{0,1,3,4,6}.{weight,bias}` (20 tensors; the ReLUs
at indices 2 and 5 hold none). STEVE-1 uses E = H = L = 512.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from toolkit_utils.atomic_files import atomic_torch_save
from toolkit_utils.state_dicts import check_state_dict, read_state_dict, strip_key_prefixes

MINECLIP_EMBED_DIM = 512


@dataclass(frozen=True)
class PriorConfig:
    """Sizes of the prior; the defaults are those of the released steve1_prior.pt."""

    embed_dim: int = MINECLIP_EMBED_DIM  # E: MineCLIP text and visual embedding size
    hidden_dim: int = 512  # H: width of the hidden layers
    latent_dim: int = 512  # L: size of z


class GoalPrior(nn.Module):
    """CVAE p(visual goal embed | text embed); keys and forward semantics of the original TranslatorVAE."""

    def __init__(self, config: PriorConfig | None = None) -> None:
        super().__init__()
        self.config = config or PriorConfig()
        emb, hid, lat = self.config.embed_dim, self.config.hidden_dim, self.config.latent_dim
        self.encoder = nn.Sequential(
            nn.Linear(2 * emb, hid), nn.LayerNorm(hid), nn.ReLU(),
            nn.Linear(hid, hid), nn.LayerNorm(hid), nn.ReLU(),
            nn.Linear(hid, 2 * lat),
        )
        self.decoder = nn.Sequential(
            nn.Linear(lat + emb, hid), nn.LayerNorm(hid), nn.ReLU(),
            nn.Linear(hid, hid), nn.LayerNorm(hid), nn.ReLU(),
            nn.Linear(hid, emb),
        )

    def encode(self, visual_embeds: torch.Tensor, text_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z | visual, text): returns (mean, logvar), each (B, L)."""
        stats = self.encoder(torch.cat([visual_embeds, text_embeds], dim=1))  # (B, 2L)
        mean, logvar = stats.chunk(2, dim=1)
        return mean, logvar

    def decode(self, z: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """Visual embedding (B, E) for latent z (B, L) and text embedding (B, E)."""
        return self.decoder(torch.cat([z, text_embeds], dim=1))

    def sample(
        self,
        text_embeds: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Visual goal embeddings (B, E) for text embeddings (B, E): z ~ N(0, I), or z = 0 if deterministic."""
        shape = (text_embeds.shape[0], self.config.latent_dim)
        if deterministic:
            z = torch.zeros(shape, device=text_embeds.device, dtype=text_embeds.dtype)
        else:
            z = torch.randn(shape, generator=generator, device=text_embeds.device, dtype=text_embeds.dtype)
        return self.decode(z, text_embeds)

    def forward(self, text_embeds: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Same as `sample`: the original called the prior as `prior(text_embeds)`."""
        return self.sample(text_embeds, deterministic=deterministic)

    def loss(
        self,
        visual_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        beta: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ELBO loss as the original train_vae.py computes it: returns (total, recon, kl).

        recon = MSE averaged over batch and embedding dims; kl = KL(q(z|visual,text) || N(0, I)) SUMMED
        over batch and latent dims (not averaged); total = beta * kl + recon. The KL term therefore
        grows with the batch size; this is kept so that losses and beta mean what they meant there.
        """
        mean, logvar = self.encode(visual_embeds, text_embeds)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + eps * torch.exp(0.5 * logvar)  # reparameterisation trick
        pred = self.decode(z, text_embeds)
        recon = F.mse_loss(pred, visual_embeds)
        kl = -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp())
        return beta * kl + recon, recon, kl


def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> PriorConfig:
    """Infer the prior's sizes from a state dict (real files give the 512/512/512 default)."""
    enc_in, enc_out = state_dict.get("encoder.0.weight"), state_dict.get("encoder.6.weight")
    if enc_in is None or enc_out is None or enc_in.ndim != 2 or enc_out.ndim != 2:
        return PriorConfig()  # the key check that follows names what is missing
    return PriorConfig(embed_dim=enc_in.shape[1] // 2, hidden_dim=enc_in.shape[0], latent_dim=enc_out.shape[0] // 2)


def load_prior(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    config: PriorConfig | None = None,
) -> GoalPrior:
    """Load a prior from a plain state dict (e.g. steve1_prior.pt) strictly; sizes inferred unless given.

    `module.` (DDP) and `_orig_mod.` (torch.compile) key prefixes are removed. Raises FileNotFoundError,
    ValueError (not a weights file: one line saying what it is) or StateDictMismatchError.
    """
    state_dict = strip_key_prefixes(read_state_dict(path), ("module.",))
    model = GoalPrior(config or config_from_state_dict(state_dict))
    check_state_dict(model, state_dict, str(path),
                     hint="expected a plain state dict with keys encoder.{0,1,3,4,6}.* and decoder.{0,1,3,4,6}.*")
    model.load_state_dict(state_dict, strict=True)
    return model.to(device).eval()


def save_prior(model: GoalPrior, path: str | os.PathLike) -> Path:
    """Write the model as a plain CPU state dict (steve1_prior.pt format), atomically."""
    path = Path(path)
    atomic_torch_save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, path)
    return path
