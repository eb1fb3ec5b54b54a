"""Training building blocks: LR schedule, decay groups, freezing, sample order and position, the optimizer step,
the DataLoader worker cap, the training curves' drawing and the benchmark's reading of train.py's output."""

from __future__ import annotations

import argparse
import importlib
import math

import pytest
import torch

from conftest import random_obs
from data.sample_order import ShardedEpochSampler
from training import device
from training.bc_loss import bc_window_loss, split_windows, window_nll
from training.checkpointing import frames_label
from training.evaluate_offline import draw_loss_curves
from training.lr_schedule import learning_rate_at
from training.metrics import PEAK_MEMORY_TAG, metrics_block_text
from training.optim import apply_freeze, make_optimizer, trainable_summary
from training_helpers import REPO_ROOT
from vpt_model.policy import detach_state


def test_lr_warmup_and_cosine_values():
    lr, warm, n = 4e-5, 10_000_000, 100_000_000
    assert learning_rate_at(0, lr, warm, n) == 0.0
    assert learning_rate_at(5_000_000, lr, warm, n) == pytest.approx(2e-5)
    assert learning_rate_at(warm, lr, warm, n) == pytest.approx(lr)
    # halfway through the cosine (which ends at 1.1 * n_frames): half the peak
    mid = warm + (1.1 * n - warm) / 2
    assert learning_rate_at(int(mid), lr, warm, n) == pytest.approx(lr / 2, rel=1e-6)
    at_end = learning_rate_at(n, lr, warm, n)
    expected = lr * 0.5 * (1 + math.cos(math.pi * (n - warm) / (1.1 * n - warm)))
    assert at_end == pytest.approx(expected) and 0 < at_end < lr * 0.03
    assert learning_rate_at(int(1.1 * n) + 1, lr, warm, n) == 0.0


def test_decay_groups_follow_the_original(tiny_policy):
    apply_freeze(tiny_policy, [])
    opt = make_optimizer(tiny_policy, 1e-4, 0.039428)
    names = {id(p): n for n, p in tiny_policy.named_parameters()}
    decay = {names[id(p)] for p in opt.param_groups[0]["params"]}
    no_decay = {names[id(p)] for p in opt.param_groups[1]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 0.039428 and opt.param_groups[1]["weight_decay"] == 0.0
    assert "net.recurrent_layer.blocks.0.r.orc_block.b_nd" in decay  # a bare Parameter: decayed
    assert "net.img_process.cnn.stacks.0.n.weight" in decay  # GroupNorm weight: decayed, as in the original
    assert "net.img_process.cnn.stacks.0.firstconv.layer.weight" in decay
    assert "net.mineclip_embed_linear.weight" in decay
    assert "net.final_ln.weight" in no_decay and "net.recurrent_layer.blocks.0.pre_r_ln.weight" in no_decay
    assert "pi_head.buttons.linear_layer.bias" in no_decay and "net.mineclip_embed_linear.bias" in no_decay
    assert not any(n.startswith("value_head") for n in decay | no_decay)  # frozen: BC does not train it
    assert not decay & no_decay


def test_freeze_keeps_goal_layer_and_heads_trainable(tiny_policy):
    apply_freeze(tiny_policy, ["cnn", "transformer"])
    trainable = {n for n, p in tiny_policy.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("net.mineclip_embed_linear", "pi_head", "net.lastlayer", "net.final_ln")) for n in trainable)
    assert "net.mineclip_embed_linear.weight" in trainable and "pi_head.camera.linear_layer.weight" in trainable
    assert any("frozen" in line and "net.img_process" in line for line in trainable_summary(tiny_policy))
    with pytest.raises(ValueError, match="unknown part"):
        apply_freeze(tiny_policy, ["wheels"])


def _take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_sample_order_is_seeded_sharded_and_resumable():
    single = _take(ShardedEpochSampler(50, batch_size=8, seed=3), 12)  # crosses into epoch 1 (6 batches per epoch)
    assert single == _take(ShardedEpochSampler(50, batch_size=8, seed=3), 12)
    assert [k[0] for k in single[5]] == [0] * 8 and [k[0] for k in single[6]] == [1] * 8
    assert len({i for b in single[:6] for _, i in b}) == 48  # no repeats within an epoch
    rank0 = _take(ShardedEpochSampler(50, batch_size=4, seed=3, world_size=2, rank=0), 12)
    rank1 = _take(ShardedEpochSampler(50, batch_size=4, seed=3, world_size=2, rank=1), 12)
    for one, a, b in zip(single, rank0, rank1):
        assert sorted(one) == sorted(a + b) and not set(a) & set(b)
    resumed = _take(ShardedEpochSampler(50, batch_size=8, seed=3, start_epoch=0, start_sample=24), 3)
    assert resumed == single[3:6]
    with pytest.raises(ValueError, match="lower --batch_size"):
        ShardedEpochSampler(5, batch_size=4, seed=0, world_size=2)


@pytest.mark.parametrize("num_samples, global_batch", [(50, 8), (48, 8), (50, 12), (13, 13), (40, 6)])
@pytest.mark.parametrize("start", [(0, 0), (0, 40), (2, 5), (1, 47)])
def test_position_after_is_exactly_where_the_batches_continue(num_samples, global_batch, start):
    sampler = ShardedEpochSampler(num_samples, global_batch, seed=7, start_epoch=start[0], start_sample=start[1])
    stream = _take(sampler, 30)
    for consumed in range(25):
        epoch, sample = sampler.position_after(consumed)
        resumed = ShardedEpochSampler(num_samples, global_batch, seed=7, start_epoch=epoch, start_sample=sample)
        assert _take(resumed, 5) == stream[consumed:consumed + 5], consumed


def _global_batches(world: int, start: tuple[int, int], n: int) -> list[list]:
    """The first n global batches that `world` processes (batch 4 each) draw from `start`, ranks in order."""
    ranks = [_take(ShardedEpochSampler(50, 4, seed=3, world_size=world, rank=r, start_epoch=start[0],
                                       start_sample=start[1]), n) for r in range(world)]
    return [[key for rank in ranks for key in rank[i]] for i in range(n)]


def test_a_two_process_checkpoint_resumed_with_three_processes_sees_what_an_uninterrupted_three_process_run_sees():
    # 2 processes x batch 4 consume 5 global batches: the checkpoint says (epoch 0, sample 40) ...
    assert ShardedEpochSampler(50, 4, seed=3, world_size=2, rank=0).position_after(5) == (0, 40)
    seen_by_two = _global_batches(2, (0, 0), 5)
    # ... and 3 processes x batch 4 go on from there. Uninterrupted from that point:
    uninterrupted = _global_batches(3, (0, 40), 8)
    # Stopped after 1 global batch, then after 2 more, resumed each time where the sampler says (what a
    # checkpoint records); the train.py of before kept its own count and recorded (1, 0), then (1, 12).
    first_stop = ShardedEpochSampler(50, 4, seed=3, world_size=3, rank=0, start_sample=40).position_after(1)
    assert first_stop == (1, 12)  # 40 + 12 > the 48 usable samples of epoch 0: the first batch was epoch 1's
    second_stop = ShardedEpochSampler(50, 4, seed=3, world_size=3, rank=0, start_epoch=1,
                                      start_sample=12).position_after(2)
    assert second_stop == (1, 36)
    resumed = _global_batches(3, (0, 40), 1) + _global_batches(3, first_stop, 2) + _global_batches(3, second_stop, 5)
    assert resumed == uninterrupted
    # epoch 0 was read without a repeat: 40 samples by 2 processes, none more by 3 (no whole batch of 12 was left)
    epoch0 = [i for batch in seen_by_two + resumed for e, i in batch if e == 0]
    assert len(epoch0) == len(set(epoch0)) == 40


def _batch(seed: int, b: int = 2, t: int = 8) -> dict[str, torch.Tensor]:
    obs = random_obs(b, t, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    firsts = torch.zeros(b, t, dtype=torch.bool)
    firsts[:, 0] = True
    return {**obs, "buttons": torch.randint(0, 8641, (b, t), generator=g), "camera": torch.randint(0, 121, (b, t), generator=g), "firsts": firsts}


def _sample_batch(seed: int, b: int, t: int, invalid: tuple[int, ...] = ()) -> dict:
    """A batch as the DataLoader of SkippingBadSamples gives it: tensors plus `valid` and `error`."""
    batch = _batch(seed, b, t)
    batch["valid"] = torch.tensor([i not in invalid for i in range(b)])
    batch["error"] = ["ep frames 0..1: VideoError: truncated" if i in invalid else "" for i in range(b)]
    return batch


def _reference_steps(policy, batches: list[dict], trunc_t: int, accumulation: int, steps: int, lr: float,
                     max_grad_norm: float) -> None:
    """The same optimizer steps written independently: per step, the windows' losses (the mean NLL of the valid
    samples) summed into one graph, one backward, clip, SGD. The state restarts at every batch."""
    optimizer = torch.optim.SGD(policy.parameters(), lr=lr)
    windows = []
    for batch in batches:
        tensors = {k: v for k, v in batch.items() if k not in ("valid", "error")}
        windows += [(w, i == 0, batch["valid"]) for i, w in enumerate(split_windows(tensors, trunc_t))]
    state = None
    for step in range(steps):
        total = 0.0
        for window, starts_batch, valid in windows[step * accumulation:(step + 1) * accumulation]:
            if starts_batch:
                state = policy.initial_state(window["firsts"].shape[0])
            nll, _, state = window_nll(policy, window, state)
            total = total + nll[valid].mean()
            state = detach_state(state)
        (total / accumulation).backward()
        torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.requires_grad], max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()


def test_the_optimizer_step_accumulates_windows_across_batches_like_one_graph(tiny_policy, tiny_config):
    from accelerate import Accelerator

    from embed_conditioned_policy import SteveAgentPolicy
    from training.optimizer_step import BCStepper

    # 2 windows per batch, 3 windows per step: step 1 ends inside batch 2, step 2 at its end; a sample of batch 2
    # could not be read (marked invalid) and must not count. No clipping, which would hide a wrong scale.
    batches = [_sample_batch(1, 3, 4), _sample_batch(2, 3, 4, invalid=(1,)), _sample_batch(3, 3, 4)]
    start = {k: v.clone() for k, v in tiny_policy.state_dict().items()}
    twin = SteveAgentPolicy(tiny_config)
    twin.load_state_dict(start)
    for p in (tiny_policy, twin):
        apply_freeze(p, [])
    optimizer = torch.optim.SGD(tiny_policy.parameters(), lr=0.05)
    loader = [{**b, "error": list(b["error"])} for b in batches]  # the stepper takes valid/error out of its copies
    stepper = BCStepper(tiny_policy, tiny_policy, optimizer, Accelerator(cpu=True), loader, 3, trunc_t=2,
                        accumulation=3, max_grad_norm=1e9)
    first, second = stepper.step(0.05), stepper.step(0.05)
    assert (first.batch_ended, second.batch_ended) == (False, True)
    assert (first.samples_read, second.samples_read) == (6, 3) and stepper.batches_drawn == 3
    assert first.skipped == ["ep frames 0..1: VideoError: truncated"] and second.skipped == []
    _reference_steps(twin, batches, trunc_t=2, accumulation=3, steps=2, lr=0.05, max_grad_norm=1e9)
    # oneDNN's convolution backward sums in another order for one graph than for three windows: measured gaps of
    # 1e-6 to 4e-4 of the distance moved. Losses not divided by the accumulation, gradients zeroed per window
    # (the original's bug) or the unreadable sample counted give 0.6 or more.
    a, b = tiny_policy.state_dict(), twin.state_dict()
    gap = sum(((a[k] - b[k]).double() ** 2).sum() for k in a) ** 0.5
    moved = sum(((a[k] - start[k]).double() ** 2).sum() for k in a) ** 0.5
    assert float(gap / moved) < 1e-2


def test_window_loss_is_sum_over_time_mean_over_batch(tiny_policy):
    batch = _batch(2, b=3, t=4)
    loss, _ = bc_window_loss(tiny_policy, batch, tiny_policy.initial_state(3))
    with torch.no_grad():
        pd, _, _ = tiny_policy({"img": batch["img"], "mineclip_embed": batch["mineclip_embed"]}, batch["firsts"], tiny_policy.initial_state(3))
    nll = -(pd["buttons"].gather(-1, batch["buttons"][..., None]) + pd["camera"].gather(-1, batch["camera"][..., None]))[..., 0]
    torch.testing.assert_close(loss.detach(), nll.sum(1).mean())


def test_snapshot_labels():
    assert [frames_label(x) for x in (5_000_000, 2_500_000, 20_000, 512)] == ["5M", "2.5M", "20K", "512"]


def test_dataloader_workers_are_capped_at_the_usable_cores(monkeypatch):
    monkeypatch.setattr(device, "usable_cores", lambda: 2)
    assert device.capped_workers(2) == (2, None) and device.capped_workers(0) == (0, None)
    workers, note = device.capped_workers(4)
    assert workers == 2
    assert note == ("--num_workers 4 is more than the 2 CPU cores this process may use: using 2 DataLoader workers "
                    "(more would only compete for the cores)")


def test_single_points_of_a_curve_are_drawn_as_markers():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    series = {"loss/train": [(2, 100.0)], "loss/val": [(0, 110.0)], "loss/val_uncond": [(0, 111.0)]}
    lines = draw_loss_curves(ax, series)
    plt.close(fig)
    # a line through one point draws nothing: each series needs a visible marker
    assert [line.get_label() for line in lines] == list(series)
    assert all(line.get_marker() not in (None, "None", "", " ") and line.get_markersize() > 0 for line in lines)
    fig, ax = plt.subplots()
    long_run = draw_loss_curves(ax, {"loss/train": [(step, 1.0) for step in range(1000)]})  # a line, no dots
    plt.close(fig)
    assert long_run[0].get_marker() in (None, "None", "")


def test_the_train_loop_benchmark_reads_peak_memory_from_train_pys_metrics_block(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    bench = importlib.import_module("bench_train_loop")
    lines = []
    for step, peak in ((1, 12.5), (2, 13.0), (3, 13.25)):  # the block train.py prints (MetricsLogger.metrics_block)
        block = metrics_block_text(step, {"loss/train": 100.0, PEAK_MEMORY_TAG: peak, "processed_frames": step * 1024})
        lines += [(float(step), line) for line in block.splitlines()]
    args = argparse.Namespace(batch_size=8, trunc_t=64, gradient_accumulation_steps=2, skip_steps=0)
    summary = bench.summarise(lines, args)
    assert summary["steps_logged"] == 3 and summary["peak_gib"] == 13.25
