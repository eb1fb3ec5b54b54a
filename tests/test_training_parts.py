"""Training building blocks: LR schedule, decay groups, freezing, sample order, gradient accumulation."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import random_obs
from data.sample_order import ShardedEpochSampler
from training.bc_loss import bc_window_loss, split_windows
from training.checkpointing import frames_label
from training.lr_schedule import learning_rate_at
from training.optim import apply_freeze, make_optimizer, trainable_summary
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
    # resume with another number of processes continues at the same global position
    two = _take(ShardedEpochSampler(50, batch_size=4, seed=3, world_size=2, rank=0, start_sample=24), 1)
    assert set(two[0]) <= set(single[3])
    with pytest.raises(ValueError, match="lower --batch_size"):
        ShardedEpochSampler(5, batch_size=4, seed=0, world_size=2)


def _batch(seed: int, b: int = 2, t: int = 8) -> dict[str, torch.Tensor]:
    obs = random_obs(b, t, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    firsts = torch.zeros(b, t, dtype=torch.bool)
    firsts[:, 0] = True
    return {**obs, "buttons": torch.randint(0, 8641, (b, t), generator=g), "camera": torch.randint(0, 121, (b, t), generator=g), "firsts": firsts}


def test_gradient_accumulation_equals_one_step_on_the_summed_windows(tiny_policy, tiny_config):
    from embed_conditioned_policy import SteveAgentPolicy

    batch = _batch(1, b=2, t=8)
    windows = split_windows(batch, 2)  # 4 windows x batch 2
    twin = SteveAgentPolicy(tiny_config)
    twin.load_state_dict(tiny_policy.state_dict())
    for p in (tiny_policy, twin):
        apply_freeze(p, [])
    # accumulated: one backward per window (state detached between windows), averaged like the loop does
    opt_a = make_optimizer(tiny_policy, 1e-3, 0.01)
    state = tiny_policy.initial_state(2)
    for w in windows:
        loss, state = bc_window_loss(tiny_policy, w, state)
        (loss / len(windows)).backward()
        state = detach_state(state)
    torch.nn.utils.clip_grad_norm_([p for p in tiny_policy.parameters() if p.requires_grad], 5.0)
    opt_a.step()
    # single step: the same windows' losses summed into one graph, one backward
    opt_b = make_optimizer(twin, 1e-3, 0.01)
    state, total = twin.initial_state(2), 0.0
    for w in windows:
        loss, state = bc_window_loss(twin, w, state)
        total = total + loss
        state = detach_state(state)
    (total / len(windows)).backward()
    torch.nn.utils.clip_grad_norm_([p for p in twin.parameters() if p.requires_grad], 5.0)
    opt_b.step()
    for (name, a), b in zip(tiny_policy.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.equal(tiny_policy.state_dict()["pi_head.buttons.linear_layer.bias"],
                           SteveAgentPolicy(tiny_config).state_dict()["pi_head.buttons.linear_layer.bias"])


def test_window_loss_is_sum_over_time_mean_over_batch(tiny_policy):
    batch = _batch(2, b=3, t=4)
    loss, _ = bc_window_loss(tiny_policy, batch, tiny_policy.initial_state(3))
    with torch.no_grad():
        pd, _, _ = tiny_policy({"img": batch["img"], "mineclip_embed": batch["mineclip_embed"]}, batch["firsts"], tiny_policy.initial_state(3))
    nll = -(pd["buttons"].gather(-1, batch["buttons"][..., None]) + pd["camera"].gather(-1, batch["camera"][..., None]))[..., 0]
    torch.testing.assert_close(loss.detach(), nll.sum(1).mean())


def test_snapshot_labels():
    assert [frames_label(x) for x in (5_000_000, 2_500_000, 20_000, 512)] == ["5M", "2.5M", "20K", "512"]
