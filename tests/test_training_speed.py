"""The fast paths give what the plain fp32 path gives, on CPU: regional compilation, the memory mode,
the ReLU moved after the max-pool, and the in-place acting step (training/performance.py,
vpt_model/fast_acting.py). Their GPU speed is measured by benchmarks/ (BENCHMARKS.md)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from conftest import random_obs
from training.bc_loss import bc_window_loss
from training.performance import speed_up_training
from vpt_model.fast_acting import FrameStepper
from vpt_model.impala_cnn import CnnDownStack
from vpt_model.layers import normalize_rows
from vpt_model.policy import detach_state


def _window(seed: int, batch: int = 2, t: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        **random_obs(batch, t, seed=seed),
        "buttons": torch.randint(0, 8641, (batch, t), generator=g),
        "camera": torch.randint(0, 121, (batch, t), generator=g),
        "firsts": torch.zeros(batch, t, dtype=torch.bool),
    }


def _train_windows(policy, windows: int = 3, saved: list | None = None):
    """Losses and accumulated gradients of consecutive windows (state carried); bytes kept for backward in `saved`."""

    def pack(tensor):
        if saved is not None:
            saved.append(tensor.numel() * tensor.element_size())
        return tensor

    state, losses = policy.initial_state(2), []
    for i in range(windows):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss, state = bc_window_loss(policy, _window(i), state)
        loss.backward()
        state = detach_state(state)
        losses.append(loss.detach())
    return torch.stack(losses), {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}


def test_relu_after_max_pool_equals_the_original_order():
    torch.manual_seed(0)
    stack = CnnDownStack(3, 8, 2, "group", False, 1, 1.7)
    x = torch.randn(4, 3, 32, 32)

    def original_order(module, inp):  # VPT: firstconv with its ReLU, then the max-pool
        out = F.max_pool2d(F.relu(module.firstconv(inp)), kernel_size=3, stride=2, padding=1)
        out = module.n(out)
        for block in module.blocks:
            out = block(out)
        return out

    reference = copy.deepcopy(stack)
    ours, theirs = stack(x), original_order(reference, x)
    assert torch.equal(ours, theirs)
    grad = torch.randn_like(ours)
    ours.backward(grad)
    theirs.backward(grad)
    for (name, p), q in zip(stack.named_parameters(), reference.parameters()):
        assert torch.equal(p.grad, q.grad), name


@pytest.mark.slow  # compiles (aot_eager): ~15-35 s on a 2-core machine
def test_regional_compilation_and_memory_mode_same_gradients_compiled_once(tiny_policy):
    plain = copy.deepcopy(tiny_policy).train()
    fast = copy.deepcopy(tiny_policy).train()
    torch._dynamo.reset()
    counters.clear()
    speed_up_training(fast, low_memory=True, backend="aot_eager")
    kept_plain, kept_fast = [], []
    losses, grads = _train_windows(fast, windows=1, saved=kept_fast)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == 4  # three CNN stacks (different sizes) and one graph shared by both transformer blocks
    more_losses, grads = _train_windows(fast, windows=2)  # windows 2 and 3 (state from the cache) add to the grads
    with torch.no_grad():  # validation: eager, nothing compiled
        fast(random_obs(3, 5), torch.zeros(3, 5, dtype=torch.bool), fast.initial_state(3))
    assert counters["stats"]["unique_graphs"] == graphs
    ref_losses, ref_grads = _train_windows(plain, windows=1, saved=kept_plain)
    ref_more, ref_grads = _train_windows(plain, windows=2)
    torch.testing.assert_close(torch.cat([losses, more_losses]), torch.cat([ref_losses, ref_more]), rtol=1e-6, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, g in ref_grads.items():  # the memory mode sums the first stack's gradients in another order
        assert (grads[name] - g).norm() <= 1e-5 * g.norm(), name
    assert sum(kept_fast) < 0.7 * sum(kept_plain)  # the first stack's activations are not kept


def test_memory_mode_eager_same_gradients_and_keeps_less(tiny_policy):
    plain, low = copy.deepcopy(tiny_policy).train(), copy.deepcopy(tiny_policy).train()
    speed_up_training(low, compile_regions=False, low_memory=True)
    kept_plain, kept_low = [], []
    ref_losses, ref_grads = _train_windows(plain, windows=1, saved=kept_plain)
    losses, grads = _train_windows(low, windows=1, saved=kept_low)
    torch.testing.assert_close(losses, ref_losses, rtol=1e-6, atol=1e-5)
    for name, g in ref_grads.items():
        assert (grads[name] - g).norm() <= 1e-5 * g.norm(), name
    assert sum(kept_low) < 0.7 * sum(kept_plain)


def test_speed_up_training_refuses_a_second_call(tiny_policy):
    policy = copy.deepcopy(tiny_policy)
    speed_up_training(policy, compile_regions=False, low_memory=True)
    with pytest.raises(ValueError, match="already applied"):
        speed_up_training(policy, compile_regions=False)
    with pytest.raises(ValueError, match="chunks"):
        speed_up_training(copy.deepcopy(tiny_policy), compile_regions=False, low_memory=True, chunks=0)


def test_next_state_has_the_initial_state_layout(tiny_policy):
    # torch.compile guards on strides: a state with other strides than initial_state's would compile again
    state = tiny_policy.initial_state(2)
    with torch.no_grad():
        _, _, new_state = tiny_policy(random_obs(2, 5), torch.zeros(2, 5, dtype=torch.bool), state)
    for old, new in zip(state, new_state):
        assert [t.stride() for t in old] == [t.stride() for t in new]


@torch.no_grad()
def test_frame_stepper_equals_plain_policy_calls(tiny_policy):
    stepper = FrameStepper(tiny_policy, "cpu")
    obs = random_obs(2, 9, seed=7)
    for batch, steps in ((2, 9), (1, 2), (2, 2)):  # 9 > the tiny cache (8 frames): it wraps; reset empties it
        stepper.reset(batch)
        state = tiny_policy.initial_state(batch)
        for t in range(steps):
            frame = {k: v[:batch, t : t + 1] for k, v in obs.items()}
            expected, _, state = tiny_policy(frame, torch.zeros(batch, 1, dtype=torch.bool), state)
            got = stepper.step(frame["img"], frame["mineclip_embed"])
            for key in expected:
                torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


def test_frame_stepper_refuses_misuse(tiny_policy):
    with pytest.raises(RuntimeError, match="reset"):
        FrameStepper(tiny_policy, "cpu").step(torch.zeros(1, 1, 128, 128, 3, dtype=torch.uint8), torch.zeros(1, 1, 512))
    with pytest.raises(ValueError, match="CUDA"):
        FrameStepper(tiny_policy, "cpu", cuda_graph=True)


def test_normalize_rows_equals_group_and_layer_norm():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, 7, generator=g) * 3 + 1
    weight, bias = torch.randn(6, generator=g), torch.randn(6, generator=g)
    got = normalize_rows(x, 2, weight.reshape(-1, 1, 1), bias.reshape(-1, 1, 1), 1e-5, (2, 1, 1, 1))
    torch.testing.assert_close(got, F.group_norm(x, 1, weight, bias, 1e-5), rtol=1e-5, atol=1e-5)
    y = torch.randn(2, 3, 40, generator=g) - 2
    weight, bias = torch.randn(40, generator=g), torch.randn(40, generator=g)
    got = normalize_rows(y, 6, weight, bias, 1e-5, (2, 3, 1))
    torch.testing.assert_close(got, F.layer_norm(y, (40,), weight, bias, 1e-5), rtol=1e-5, atol=1e-5)
