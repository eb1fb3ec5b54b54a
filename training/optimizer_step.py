"""One optimizer step of behavioural cloning: accumulate truncated-BPTT windows, clip, step.

The training batches (B samples of T frames) are cut into T / trunc_t windows; the transformer's state is
carried (and detached) from window to window within a sample and starts empty at every new batch (each
sample starts an episode for the policy). An optimizer step takes the next `gradient_accumulation_steps`
windows from that stream, so a step may end inside a batch; `StepResult.batch_ended` says when it does
not, which is where a checkpoint resumes exactly (the next run starts with the next batch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Iterable

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from training.bc_loss import bc_window_loss, split_windows
from vpt_model.policy import detach_state


@dataclasses.dataclass
class StepResult:
    loss: float  # mean window loss of the step, all processes
    grad_norm: float  # L2 norm of the accumulated gradient before clipping
    batch_ended: bool  # the step's last window was the last of its batch: a checkpoint here resumes exactly
    samples_read: int  # samples of the batches this step drew, all processes together
    skipped: list[str]  # those that could not be read (one line each, all processes); left out of the loss


class BCStepper:
    """Runs optimizer steps over the window stream of a DataLoader of SkippingBadSamples batches."""

    def __init__(self, model: torch.nn.Module, policy: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 accelerator: Accelerator, batches: Iterable[dict], global_batch_size: int, trunc_t: int,
                 accumulation: int, max_grad_norm: float) -> None:
        self.model, self.policy, self.optimizer, self.accelerator = model, policy, optimizer, accelerator
        self.batches = iter(batches)
        self.global_batch_size = global_batch_size
        self.trunc_t, self.accumulation, self.max_grad_norm = trunc_t, accumulation, max_grad_norm
        self.trainable = [p for p in policy.parameters() if p.requires_grad]
        self.batches_drawn = 0  # global batches taken from the loader (the sampler turns this into a data position)
        self.windows: list[dict[str, torch.Tensor]] = []  # windows of the current batch not trained on yet
        self.valid: torch.Tensor | None = None  # (B,) samples of the current batch that count; None: all
        self.state = None

    def _next_window(self, skipped: list[str]) -> dict[str, torch.Tensor]:
        if not self.windows:
            batch = next(self.batches)
            skipped += [error for error in batch.pop("error") if error]
            valid = batch.pop("valid")
            device = self.accelerator.device
            self.valid = None if bool(valid.all()) else valid.to(device)  # a CPU check: no GPU sync
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            self.windows = split_windows(batch, self.trunc_t)
            self.state = self.policy.initial_state(batch["firsts"].shape[0], device)  # every sample starts an episode
            self.batches_drawn += 1
        return self.windows.pop(0)

    def step(self, learning_rate: float) -> StepResult:
        """Accumulate the next windows, clip and step. A non-finite loss or gradient leaves the weights untouched."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        losses, skipped, drawn_before = [], [], self.batches_drawn
        for i in range(self.accumulation):
            window = self._next_window(skipped)
            sync = i == self.accumulation - 1
            # Without sync, DDP skips its all-reduce: gradients add up locally until the last window.
            with contextlib.nullcontext() if sync else self.accelerator.no_sync(self.model):
                loss, state = bc_window_loss(self.model, window, self.state, self.valid)
                self.accelerator.backward(loss / self.accumulation)
            self.state = detach_state(state)
            losses.append(loss.detach().float())
        grad_norm = self.accelerator.clip_grad_norm_(self.trainable, self.max_grad_norm)
        stats = torch.stack([torch.stack(losses).mean(), torch.as_tensor(grad_norm, dtype=torch.float32, device=losses[0].device),
                             torch.tensor(float(len(skipped)), device=losses[0].device)])
        loss_sum, norm_sum, n_skipped = self.accelerator.reduce(stats, reduction="sum").tolist()  # one GPU sync per step
        world = self.accelerator.num_processes
        if math.isfinite(loss_sum) and math.isfinite(norm_sum):  # otherwise stop before a NaN reaches the weights
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if n_skipped and world > 1:
            skipped = gather_object(skipped)
        samples = (self.batches_drawn - drawn_before) * self.global_batch_size
        return StepResult(loss_sum / world, norm_sum / world, not self.windows, samples, skipped)
