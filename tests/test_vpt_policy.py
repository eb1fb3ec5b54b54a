"""The VPT / STEVE-1 policy: state-dict layout of the real 2x model and recurrent-state semantics."""

from __future__ import annotations

import torch

from conftest import TEST_DATA, random_obs
from embed_conditioned_policy import GOAL_LAYER_KEYS, SteveAgentPolicy
from vpt_model.config import preset
from vpt_model.policy import MinecraftAgentPolicy


def _reference_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (TEST_DATA / "vpt_2x_state_dict_keys.txt").read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        shapes[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return shapes


def test_2x_steve1_state_dict_equals_reference_plus_goal_layer():
    with torch.device("meta"):  # shapes only, no 1 GB allocation
        policy = SteveAgentPolicy(preset("2x"))
    ours = {k: tuple(v.shape) for k, v in policy.state_dict().items()}
    expected = _reference_shapes()
    expected[GOAL_LAYER_KEYS[0]] = (2048, 512)
    expected[GOAL_LAYER_KEYS[1]] = (2048,)
    assert ours == expected
    n_params = sum(p.numel() for p in policy.parameters())
    n_buffers = sum(b.numel() for b in policy.buffers())
    assert n_params + n_buffers == 248_495_294 + 1_050_624  # the released 2x model + the STEVE-1 goal layer


def test_2x_vpt_state_dict_equals_reference():
    with torch.device("meta"):
        policy = MinecraftAgentPolicy(preset("2x"))
    assert {k: tuple(v.shape) for k, v in policy.state_dict().items()} == _reference_shapes()


def _run(policy, obs, first, state, splits):
    outs, start = [], 0
    for n in splits:
        sl = slice(start, start + n)
        pd, v, state = policy({k: x[:, sl] for k, x in obs.items()}, first[:, sl], state)
        outs.append((pd["buttons"], pd["camera"], v))
        start += n
    return [torch.cat(parts, dim=1) for parts in zip(*outs)], state


@torch.no_grad()
def test_whole_sequence_equals_frame_by_frame_and_chunks(tiny_policy):
    t = 21  # longer than the tiny cache (8 frames), so the cache wraps around
    obs = random_obs(2, t, seed=3)
    first = torch.zeros(2, t, dtype=torch.bool)
    whole, state_whole = _run(tiny_policy, obs, first, tiny_policy.initial_state(2), [t])
    single, state_single = _run(tiny_policy, obs, first, tiny_policy.initial_state(2), [1] * t)
    chunks, state_chunks = _run(tiny_policy, obs, first, tiny_policy.initial_state(2), [5, 1, 9, 6])
    for a, b, c in zip(whole, single, chunks):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
    for layer_a, layer_b in zip(state_whole, state_single):
        assert torch.equal(layer_a[0], layer_b[0])
        torch.testing.assert_close(layer_a[1], layer_b[1], atol=1e-5, rtol=1e-5)
    # and the outputs really depend on the past (otherwise the test above proves nothing)
    fresh, _ = _run(tiny_policy, {k: x[:, 10:] for k, x in obs.items()}, first[:, 10:], tiny_policy.initial_state(2), [11])
    assert (fresh[0] - whole[0][:, 10:]).abs().max() > 1e-4


@torch.no_grad()
def test_first_at_chunk_start_ignores_incoming_state(tiny_policy):
    warmup = random_obs(2, 12, seed=4)
    _, state = _run(tiny_policy, warmup, torch.zeros(2, 12, dtype=torch.bool), tiny_policy.initial_state(2), [12])
    obs = random_obs(2, 6, seed=5)
    first = torch.zeros(2, 6, dtype=torch.bool)
    first[:, 0] = True
    with_state, _ = _run(tiny_policy, obs, first, state, [6])
    from_scratch, _ = _run(tiny_policy, obs, first, tiny_policy.initial_state(2), [6])
    for a, b in zip(with_state, from_scratch):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    no_first, _ = _run(tiny_policy, obs, torch.zeros_like(first), state, [6])
    assert (no_first[0] - with_state[0]).abs().max() > 1e-4


@torch.no_grad()
def test_first_resets_only_its_own_row(tiny_policy):
    warmup = random_obs(2, 10, seed=6)
    _, state = _run(tiny_policy, warmup, torch.zeros(2, 10, dtype=torch.bool), tiny_policy.initial_state(2), [10])
    obs = random_obs(2, 4, seed=7)
    first = torch.tensor([[True, False, False, False], [False, False, False, False]])
    out, _ = _run(tiny_policy, obs, first, state, [4])
    row1_alone, _ = _run(
        tiny_policy, {k: v[1:] for k, v in obs.items()}, first[1:], [tuple(s[1:] for s in layer) for layer in state], [4]
    )
    torch.testing.assert_close(out[0][1:], row1_alone[0], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_outputs_are_normalised_log_probs_and_goal_matters(tiny_policy):
    obs = random_obs(1, 3, seed=8)
    first = torch.zeros(1, 3, dtype=torch.bool)
    pd, v, _ = tiny_policy(obs, first, tiny_policy.initial_state(1))
    assert pd["buttons"].shape == (1, 3, 8641) and pd["camera"].shape == (1, 3, 121) and v.shape == (1, 3, 1)
    torch.testing.assert_close(pd["buttons"].exp().sum(-1), torch.ones(1, 3))
    obs2 = dict(obs, mineclip_embed=torch.zeros_like(obs["mineclip_embed"]))
    pd2, _, _ = tiny_policy(obs2, first, tiny_policy.initial_state(1))
    assert (pd["buttons"] - pd2["buttons"]).abs().max() > 1e-4


def test_temperature_scales_logits(tiny_config):
    import dataclasses

    torch.manual_seed(0)
    cold = SteveAgentPolicy(dataclasses.replace(tiny_config, temperature=1.0)).eval()
    hot = SteveAgentPolicy(dataclasses.replace(tiny_config, temperature=2.0)).eval()
    hot.load_state_dict(cold.state_dict())
    obs, first = random_obs(1, 2, seed=9), torch.zeros(1, 2, dtype=torch.bool)
    with torch.no_grad():
        pd_cold, _, _ = cold(obs, first, cold.initial_state(1))
        pd_hot, _, _ = hot(obs, first, hot.initial_state(1))
    torch.testing.assert_close(pd_hot["camera"], torch.log_softmax(pd_cold["camera"] / 2.0, -1), atol=1e-5, rtol=1e-5)


def test_wrong_image_shape_is_refused(tiny_policy):
    obs = random_obs(1, 2)
    obs["img"] = obs["img"][:, :, :64]
    try:
        tiny_policy(obs, torch.zeros(1, 2, dtype=torch.bool), tiny_policy.initial_state(1))
    except ValueError as e:
        assert "obs['img']" in str(e)
    else:
        raise AssertionError("a 64x128 frame was accepted")
