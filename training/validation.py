"""Validation: the loss of the policy on the validation episodes, the same number in training and offline.

`loss/val` is the training loss (NLL summed over a trunc_t window, mean over samples) on every
`val_every_nth` validation sample with its hindsight goals; the goals depend only on the validation
episodes (data/minecraft_dataset.py), so two runs, or train.py and training/evaluate_offline.py on the
same weights, measure the same thing. `loss/val_uncond` is the same samples with zero goals: the
unconditional output that classifier-free guidance subtracts. `_best` follows `loss/val` only: it is
what the fine-tuning is for (acting on goals); the unconditional loss can fall while goal-following gets
worse.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch.utils.data import DataLoader, Subset

from data.minecraft_dataset import MinecraftDataset, SkippingBadSamples
from toolkit_utils.progress import progress_bar
from training.bc_loss import split_windows, window_nll
from training.checkpointing import TrainProgress, export_best, weights_paths
from training.metrics import MetricsLogger


@dataclasses.dataclass
class ValidationResult:
    loss: float  # loss/val
    loss_uncond: float  # loss/val_uncond
    button_accuracy: float  # how often the most likely joint button action is the recorded one
    camera_accuracy: float
    sample_windows: int  # (sample, window) pairs averaged over, all processes
    skipped: list[str]  # one line per validation sample that could not be read


@torch.no_grad()
def validate(policy: torch.nn.Module, val_set: MinecraftDataset, trunc_t: int, batch_size: int, every_nth: int,
             num_workers: int, accelerator: Accelerator) -> ValidationResult:
    """Validate on every `every_nth` sample of `val_set`, the samples shared out over all processes."""
    policy.eval()
    device = accelerator.device
    indices = list(range(0, len(val_set), every_nth))[accelerator.process_index :: accelerator.num_processes]
    loader = DataLoader(Subset(SkippingBadSamples(val_set), indices), batch_size=batch_size, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    # sums: NLL with goals, NLL with zero goals, sample-windows, button hits, camera hits, frames, skipped samples
    sums = torch.zeros(7, dtype=torch.float64, device=device)
    skipped = []
    for batch in progress_bar(loader, desc="validation", leave=False, disable=not accelerator.is_main_process):
        skipped += [error for error in batch.pop("error") if error]
        valid = batch.pop("valid").to(device)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        sums[6] += (~valid).sum()
        for with_goals in (True, False):
            goals = batch["mineclip_embed"] if with_goals else torch.zeros_like(batch["mineclip_embed"])
            state = policy.initial_state(batch["firsts"].shape[0], device)  # each sample starts an episode
            for window in split_windows({**batch, "mineclip_embed": goals}, trunc_t):
                with accelerator.autocast():  # the unwrapped policy: no DDP hooks, no recompiles for a short batch
                    nll, pd, state = window_nll(policy, window, state)
                sums[0 if with_goals else 1] += torch.where(valid, nll.double(), 0.0).sum()
                if with_goals:
                    sums[2] += valid.sum()
                    sums[3] += ((pd["buttons"].argmax(-1) == window["buttons"]) & valid[:, None]).sum()
                    sums[4] += ((pd["camera"].argmax(-1) == window["camera"]) & valid[:, None]).sum()
                    sums[5] += valid.sum() * window["firsts"].shape[1]
    sums = accelerator.reduce(sums, reduction="sum").tolist()
    if sums[6] and accelerator.num_processes > 1:
        skipped = gather_object(skipped)
    policy.train()
    windows, frames = max(sums[2], 1), max(sums[5], 1)
    return ValidationResult(sums[0] / windows, sums[1] / windows, sums[3] / frames, sums[4] / frames, int(sums[2]), skipped)


def validate_and_keep_best(policy: torch.nn.Module, val_set: MinecraftDataset, args: argparse.Namespace,
                           accelerator: Accelerator, log: MetricsLogger, progress: TrainProgress) -> None:
    """Validate at progress.step, log loss/val and loss/val_uncond, export `_best` when loss/val is the lowest yet."""
    result = validate(policy, val_set, args.trunc_t, args.batch_size, args.val_every_nth, args.num_workers, accelerator)
    for line in result.skipped:
        log.info(f"Validation sample skipped (unreadable): {line}")
    log.scalars(progress.step, {"loss/val": result.loss, "loss/val_uncond": result.loss_uncond})
    log.info(f"Validation loss at step {progress.step}: {result.loss:.6g} (zero goals: {result.loss_uncond:.6g})")
    if result.loss < progress.best_val_loss:
        progress.best_val_loss, progress.best_val_step = result.loss, progress.step
        if accelerator.is_main_process:
            export_best(policy, args.out_weights, result.loss, progress)
        log.info(f"New best validation loss: {result.loss:.6g} (step {progress.step}), saved {weights_paths(args.out_weights)['best']}")
