"""Acting one frame at a time: the policy's recurrent state held in place, replayed from a CUDA graph on a GPU.

An agent step runs the whole policy on one frame (two rows with classifier-free guidance): a few hundred
small kernels whose launches, not their arithmetic, set the latency. `FrameStepper` keeps the recurrent
state (the attention layers' key/value cache) in fixed buffers that each step updates in place, so the
step has fixed shapes and addresses; on a CUDA device it is captured once per batch size as a CUDA graph
and each later step is one graph replay. On a CPU, or with `cuda_graph=False`, the same in-place step runs
eagerly; both give the log-probs of the plain `policy(obs, first, state)` call. While the graph is
captured, the CNN's norms compute their statistics with torch.var_mean (vpt_model/layers.py), so the
graph's log-probs differ from eager ones by float rounding only.

    stepper = FrameStepper(policy, device)
    stepper.reset(batch_size=2)                       # new episode: empty cache
    pd = stepper.step(img, goal)                      # img (2, 1, H, W, 3) uint8, goal (2, 1, 512)
"""

from __future__ import annotations

import torch
from torch import nn

from vpt_model.policy import PolicyState

WARMUP_STEPS = 3  # eager steps on a side stream before capture (cuDNN/cuBLAS choose their kernels here)


class _StaticStep:
    """Buffers of one batch size: inputs, the recurrent state, and (on CUDA) the captured graph and its outputs."""

    def __init__(self, policy: nn.Module, batch_size: int, device: torch.device, cuda_graph: bool) -> None:
        config = policy.config
        self.policy = policy
        self.img = torch.zeros(batch_size, 1, *config.img_shape, dtype=torch.uint8, device=device)
        self.goal = torch.zeros(batch_size, 1, config.mineclip_embed_dim, device=device)
        self.first = torch.zeros(batch_size, 1, dtype=torch.bool, device=device)
        self.state: PolicyState = policy.initial_state(batch_size, device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: dict[str, torch.Tensor] = {}
        if cuda_graph:
            self._capture()

    def reset(self) -> None:
        """Empty cache: nothing visible (mask False), zero keys and values, as policy.initial_state."""
        for layer in self.state:
            for tensor in layer:
                tensor.zero_()

    def run(self) -> dict[str, torch.Tensor]:
        """One frame through the policy from the input buffers; the state buffers are updated in place."""
        pd, _, new_state = self.policy({"img": self.img, "mineclip_embed": self.goal}, self.first, self.state)
        for layer, new_layer in zip(self.state, new_state):
            for tensor, new in zip(layer, new_layer):
                tensor.copy_(new)
        return pd

    def _capture(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # the warm-up picks the fastest convolutions; the graph keeps them
        try:
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self.run()
        finally:
            torch.backends.cudnn.benchmark = benchmark
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = self.run()
        self.reset()  # the warm-up steps advanced the state


class FrameStepper:
    """Advance `policy` (in eval mode, no gradients) one frame per call, holding its recurrent state.

    cuda_graph: replay a CUDA graph per batch size (default: when `device` is a CUDA device). The graph
    of a batch size is captured at its first reset and kept; reset() only clears the state.
    """

    def __init__(self, policy: nn.Module, device: torch.device | str, cuda_graph: bool | None = None) -> None:
        self.policy = policy
        self.device = torch.device(device)
        self.cuda_graph = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        if self.cuda_graph and self.device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs a CUDA device, got {self.device}")
        self._steps: dict[int, _StaticStep] = {}
        self._current: _StaticStep | None = None

    @torch.no_grad()
    def reset(self, batch_size: int) -> None:
        """Start an episode of `batch_size` rows with an empty cache."""
        if batch_size not in self._steps:
            self._steps[batch_size] = _StaticStep(self.policy, batch_size, self.device, self.cuda_graph)
        self._current = self._steps[batch_size]
        self._current.reset()

    @torch.no_grad()
    def step(self, img: torch.Tensor, goal: torch.Tensor) -> dict[str, torch.Tensor]:
        """img (B, 1, H, W, 3) uint8 and goal (B, 1, 512) (broadcastable to them) -> log-probs, each (B, 1, N).

        Equals `policy({"img": img, "mineclip_embed": goal}, first=False, state)` with the held state, which
        advances by the frame. Raises RuntimeError before the first reset().
        """
        if self._current is None:
            raise RuntimeError("FrameStepper.step before reset(batch_size)")
        current = self._current
        current.img.copy_(img)
        current.goal.copy_(goal)
        if current.graph is None:
            return current.run()
        current.graph.replay()
        return {k: v.clone() for k, v in current.outputs.items()}  # the next replay overwrites the outputs
