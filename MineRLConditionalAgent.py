"""An agent that plays MineRL with the STEVE-1 policy, conditioned on a MineCLIP goal embedding.

It needs no MineRL: it takes an observation dict with a `pov` frame (any size, RGB uint8, MineRL's
is 360x640) and returns a MineRL env action dict.

    agent = MineRLConditionalAgent.from_files("data/weights/vpt/2x.model", "data/weights/steve1/steve1.weights")
    agent.reset(cond_scale=6.0, seed=0)
    action = agent.get_action(obs, goal_embed)      # goal_embed: (512,) MineCLIP embedding

Sampling: actions are drawn with the agent's own torch.Generator. With a seed (at construction or at
`reset`) the same observations give the same actions; without one the generator is seeded from the
operating system's entropy, so two processes never share their action noise (an unseeded
torch.Generator would start from the same fixed seed in every process).
"""

from __future__ import annotations

import os
import secrets

import numpy as np
import torch

from embed_conditioned_policy import SteveAgentPolicy
from vpt_model.action_head import classifier_free_guidance, sample_actions
from vpt_model.action_space import joint_to_env_action
from vpt_model.fast_acting import FrameStepper
from vpt_model.frame_resize import resize_frame
from vpt_model.model_files import load_policy_config, load_policy_weights


class MineRLConditionalAgent:
    """Holds the policy and its recurrent state; one `get_action` per env step."""

    def __init__(
        self, policy: SteveAgentPolicy, device: str | torch.device | None = None, seed: int | None = None,
        cuda_graph: bool | None = None,
    ) -> None:
        """cuda_graph: replay each step from a CUDA graph (default: on a CUDA device; see vpt_model/fast_acting.py)."""
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.policy = policy.to(self.device).eval()
        self.frame_size = tuple(policy.config.img_shape[:2])
        self.stepper = FrameStepper(self.policy, self.device, cuda_graph=cuda_graph)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed if seed is not None else secrets.randbits(63))
        self.reset(cond_scale=None)

    @classmethod
    def from_files(
        cls, in_model: str | os.PathLike, in_weights: str | os.PathLike, device: str | None = None, seed: int | None = None
    ) -> "MineRLConditionalAgent":
        """Build from a `.model` file (or preset name) and a STEVE-1 `.weights` file, loaded strictly."""
        policy = SteveAgentPolicy(load_policy_config(in_model))
        load_policy_weights(policy, in_weights)
        return cls(policy, device=device, seed=seed)

    def reset(self, cond_scale: float | None = None, seed: int | None = None) -> None:
        """Start a new episode. With `cond_scale` set, run the conditional and unconditional policy side by side.

        `seed` restarts the action sampling from that seed (an episode reproducible on its own);
        None continues the current stream.
        """
        self.cond_scale = cond_scale
        if seed is not None:
            self.generator.manual_seed(seed)
        batch = 1 if cond_scale is None else 2
        self.stepper.reset(batch)

    @torch.no_grad()
    def action_distribution(self, obs: dict, goal_embed: np.ndarray) -> dict[str, torch.Tensor]:
        """Advance the state by one frame; return the (guided) log-probs, each (1, N)."""
        frame = resize_frame(np.asarray(obs["pov"]), self.frame_size)
        goal = np.asarray(goal_embed, dtype=np.float32).reshape(-1)
        img = torch.from_numpy(frame).to(self.device)[None, None]  # (1, 1, H, W, 3)
        goal_t = torch.from_numpy(goal).to(self.device)[None, None]  # (1, 1, 512)
        if self.cond_scale is not None:
            img = img.expand(2, -1, -1, -1, -1)
            goal_t = torch.cat([goal_t, torch.zeros_like(goal_t)])  # row 1: unconditional (zero goal)
        pd = {k: v[:, 0] for k, v in self.stepper.step(img, goal_t).items()}  # the only policy call while acting
        if self.cond_scale is not None:
            pd = classifier_free_guidance({k: v[:1] for k, v in pd.items()}, {k: v[1:] for k, v in pd.items()}, self.cond_scale)
        return pd

    def get_action(self, obs: dict, goal_embed: np.ndarray, deterministic: bool = False) -> dict:
        """One env step: MineRL observation + goal embedding -> MineRL env action dict."""
        pd = self.action_distribution(obs, goal_embed)
        action = sample_actions(pd, deterministic=deterministic, generator=self.generator)
        return joint_to_env_action(int(action["buttons"][0]), int(action["camera"][0]))
