"""VPT's inverse dynamics model: the released 4x layout, what its forward computes, strict and safe loading."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from model_file_factory import write_model_file
from conftest import TEST_DATA, randomize_
from embed_conditioned_policy import SteveAgentPolicy
from toolkit_utils.state_dicts import StateDictMismatchError
from vpt_model.action_space import ENV_BUTTONS, FACTORED_BUTTONS
from vpt_model.config import PolicyConfig, preset
from vpt_model.inverse_dynamics import (
    CONFIDENCE_NAMES,
    IDM_4X_MODEL_KWARGS,
    IDMConfig,
    InverseActionPolicy,
    argmax_actions,
    idm_actions_to_env,
    idm_preset,
    load_idm,
    load_idm_config,
    load_idm_weights,
)

IDM_4X_PARAMETERS = 50_014_366  # "about 50.0 M"; VPT's own InverseActionPolicy built from the same kwargs agrees


def _reference_shapes() -> dict[str, tuple[int, ...]]:
    """tests/data/vpt_idm_4x_state_dict_keys.txt: VPT's InverseActionPolicy(4x_idm.model kwargs).state_dict()."""
    shapes = {}
    for line in (TEST_DATA / "vpt_idm_4x_state_dict_keys.txt").read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        shapes[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return shapes


def test_4x_state_dict_keys_shapes_and_parameter_count_equal_the_released_model():
    with torch.device("meta"):
        idm = InverseActionPolicy(idm_preset("4x"))
    ours = {k: tuple(v.shape) for k, v in idm.state_dict().items()}
    reference = _reference_shapes()
    assert ours == reference
    assert list(ours) == list(reference)  # same order as the original modules register them
    assert sum(p.numel() for p in idm.parameters()) == IDM_4X_PARAMETERS
    # the facts the key list encodes, spelled out
    assert ours["net.conv3d_layer.layer.weight"] == (16, 3, 5, 1, 1)
    assert ours["net.recurrent_layer.blocks.0.r.orc_block.b_nd"] == (10, 0)  # memory 16 - timesteps 16: no cache
    assert ours["pi_head.buttons.linear_layer.weight"] == (20 * 2, 1024)
    assert ours["pi_head.camera.linear_layer.weight"] == (2 * 11, 1024)
    assert "net.img_process.cnn.stacks.0.firstconv.norm.weight" in ours  # first CNN conv normalised after the Conv3d


def test_model_kwargs_round_trip_and_a_model_file_loads_back(tmp_path):
    config = idm_preset("4x")
    net_args, pi_head_opts = config.to_model_kwargs()
    assert net_args == {**IDM_4X_MODEL_KWARGS, "impala_chans": [16, 32, 32]}  # the released file leaves the default out
    assert pi_head_opts == {"temperature": 1.0}
    write_model_file(config, tmp_path / "4x_idm.model")
    assert load_idm_config(tmp_path / "4x_idm.model") == config
    assert config.trunk.attention_mask_style == "none" and config.trunk.attention_memory_size == config.trunk.timesteps  # no frames kept between calls


@pytest.mark.parametrize("change, message", [
    ({"conv3d_params": None}, "no conv3d_params: this is a policy's .model"),
    ({"conv3d_params": {**IDM_4X_MODEL_KWARGS["conv3d_params"], "padding": [0, 0, 0]}}, "only 'same' padding"),
    ({"conv3d_params": {**IDM_4X_MODEL_KWARGS["conv3d_params"], "stride": [2, 1, 1]}}, "['stride'] are not implemented"),
    ({"img_shape": [128, 128, 3]}, "must be [H, W, 16]"),
    ({"attention_mask_style": "causal"}, "attention_mask_style='causal'"),
])
def test_model_kwargs_that_are_not_built_are_refused_by_name(change, message):
    with pytest.raises(ValueError) as caught:
        IDMConfig.from_model_kwargs({**IDM_4X_MODEL_KWARGS, **change}, {"temperature": 1})
    assert message in str(caught.value)


@pytest.fixture
def tiny_idm() -> InverseActionPolicy:
    torch.manual_seed(0)
    idm = InverseActionPolicy(idm_preset("tiny")).eval()
    randomize_(idm)
    return idm


def _frames(t: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, t, 128, 128, 3), generator=g, dtype=torch.uint8)


def _pd(idm, img, state=None):
    first = torch.zeros(img.shape[:2], dtype=torch.bool)
    with torch.no_grad():
        return idm({"img": img}, first, state if state is not None else idm.initial_state(img.shape[0]))


def test_heads_are_factored_log_probabilities(tiny_idm):
    pd, _ = _pd(tiny_idm, _frames(6))
    assert pd["buttons"].shape == (1, 6, 20, 2) and pd["camera"].shape == (1, 6, 2, 11)
    for logp in pd.values():
        torch.testing.assert_close(logp.exp().sum(-1), torch.ones(logp.shape[:-1]))


def test_lastlayer_changes_nothing_and_final_ln_does(tiny_idm):
    img = _frames(8)
    before, _ = _pd(tiny_idm, img)
    with torch.no_grad():
        for p in tiny_idm.net.lastlayer.parameters():
            p.mul_(-3.0).add_(1.0)
    after, _ = _pd(tiny_idm, img)
    assert all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        tiny_idm.net.final_ln.bias.add_(0.5)
    moved, _ = _pd(tiny_idm, img)
    assert (moved["buttons"] - before["buttons"]).abs().max() > 1e-3


def test_attention_sees_the_whole_chunk_and_nothing_is_carried(tiny_idm):
    img = _frames(16)
    whole, state = _pd(tiny_idm, img)
    later = img.clone()
    later[:, -1] = 255 - later[:, -1]  # change only the last frame (beyond the Conv3d's reach of frame 0)
    changed, _ = _pd(tiny_idm, later)
    assert (changed["buttons"][:, 0] - whole["buttons"][:, 0]).abs().max() > 1e-5  # "none": frame 0 sees the future
    assert all(layer[1].shape[1] == 0 for layer in state)  # memory == timesteps: an empty cache
    halves = [_pd(tiny_idm, img[:, :8], state)[0], _pd(tiny_idm, img[:, 8:], state)[0]]
    assert (torch.cat([h["buttons"] for h in halves], 1) - whole["buttons"]).abs().max() > 1e-5  # chunking matters


def test_argmax_actions_confidence_and_env_camera():
    pd = {"buttons": torch.full((1, 2, 20, 2), -0.6931), "camera": torch.full((1, 2, 2, 11), -10.0)}
    pd["buttons"][0, 0, 2] = torch.tensor([-2.0, -0.1])  # forward pressed at frame 0
    pd["camera"][0, 0, 0, 10] = -0.2  # pitch bin 10 (+10 degrees)
    pd["camera"][0, 0, 1, 5] = -0.3  # yaw bin 5 (no move)
    pd["camera"][0, 1, 0, 0] = -0.1  # frame 1: pitch bin 0 (-10 degrees)
    pd["camera"][0, 1, 1, 7] = -0.1  # and yaw bin 7 (mu-law centre +1.6095 degrees)
    buttons, camera, confidence = argmax_actions(pd)
    assert buttons[0, 0].tolist() == [0, 0, 1] + [0] * 17
    assert buttons[0, 1].sum() == 0  # equal log-probs: the lower class, as torch.argmax in the original
    assert camera.tolist() == [[[10, 5], [0, 7]]]
    torch.testing.assert_close(confidence[0, 0, 2], torch.tensor(np.exp(-0.1), dtype=torch.float32))
    torch.testing.assert_close(confidence[0, 0, 20:], torch.tensor(np.exp([-0.2, -0.3]), dtype=torch.float32))
    assert confidence.shape == (1, 2, len(CONFIDENCE_NAMES))
    env_buttons, env_camera = idm_actions_to_env(buttons[0].numpy(), camera[0].numpy())
    assert env_buttons.shape == (2, len(ENV_BUTTONS)) and env_buttons[0, ENV_BUTTONS.index("forward")] == 1
    np.testing.assert_allclose(env_camera, [[10.0, 0.0], [-10.0, 1.6095]], atol=1e-4)
    assert CONFIDENCE_NAMES[:20] == FACTORED_BUTTONS


def test_weights_load_strictly_and_every_mismatch_is_named(tiny_idm, tmp_path):
    good = tiny_idm.state_dict()
    torch.save(good, tmp_path / "ok.weights")
    fresh = InverseActionPolicy(idm_preset("tiny"))
    load_idm_weights(fresh, tmp_path / "ok.weights")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in good.items())

    bad = dict(good)
    del bad["net.conv3d_layer.layer.bias"]
    bad["net.extra.weight"] = torch.zeros(2)
    bad["pi_head.camera.linear_layer.bias"] = torch.zeros(21)
    torch.save(bad, tmp_path / "bad.weights")
    with pytest.raises(StateDictMismatchError) as caught:
        load_idm_weights(fresh, tmp_path / "bad.weights")
    message = str(caught.value)
    for key in ("net.conv3d_layer.layer.bias", "net.extra.weight", "pi_head.camera.linear_layer.bias: file (21,) vs model (22,)"):
        assert key in message


def test_a_policy_weights_file_is_named_as_such(tmp_path):
    torch.save(SteveAgentPolicy(preset("tiny")).state_dict(), tmp_path / "policy.weights")
    with pytest.raises(StateDictMismatchError, match="a VPT policy's weights file .* not the inverse dynamics model's"):
        load_idm_weights(InverseActionPolicy(idm_preset("tiny")), tmp_path / "policy.weights")


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_a_model_file_that_builds_objects_is_refused_without_running_them(tmp_path):
    path = tmp_path / "evil.model"
    net_args = {**IDM_4X_MODEL_KWARGS, "hidsize": _Boom()}
    path.write_bytes(pickle.dumps({"model": {"args": {"net": {"args": net_args}, "pi_head_opts": {}}}}))
    with pytest.raises(ValueError, match="refusing to build object .*system"):
        load_idm(path, None)


def test_policy_config_accepts_the_unmasked_style_and_round_trips_it():
    kwargs, pi = dataclasses.replace(preset("tiny"), attention_mask_style="none").to_policy_kwargs()
    assert PolicyConfig.from_policy_kwargs(kwargs, pi).attention_mask_style == "none"


def _naive_unmasked_attention(layer, x, state_k, state_v):
    """VPT's attention_mask_style "none" written out query by query: keys = cache + chunk, all visible;
    logits q.k / head_dim + sum_n r[n] * b_nd[n, distance] for 0 <= distance < M (else no bias)."""
    b, t, d = x.shape
    h, m = layer.heads, layer.maxlen
    q = layer.q_layer(x)
    k = torch.cat([state_k, layer.k_layer(x)], 1)
    v = torch.cat([state_v, layer.v_layer(x)], 1)
    r = layer.r_layer(x).reshape(b, t, h, 10)
    out = torch.zeros(b, t, d)
    hd = d // h
    for head in range(h):
        sl = slice(head * hd, (head + 1) * hd)
        for i in range(t):
            logits = (k[:, :, sl] @ q[:, i, sl].unsqueeze(-1)).squeeze(-1) / hd  # (B, M + t)
            for j in range(m + t):
                distance = m + i - j
                if 0 <= distance < m:
                    logits[:, j] += (r[:, i, head] * layer.b_nd[:, distance]).sum(-1)
            out[:, i, sl] = torch.softmax(logits, -1).unsqueeze(1).bmm(v[:, :, sl]).squeeze(1)
    return x + layer.proj_layer(out)


@pytest.mark.parametrize("memory", [16, 21])
def test_unmasked_attention_equals_its_definition_and_keeps_the_last_frames(memory):
    net_args, pi = idm_preset("tiny").to_model_kwargs()
    idm = InverseActionPolicy(IDMConfig.from_model_kwargs({**net_args, "attention_memory_size": memory}, pi))
    randomize_(idm, scale=0.3)
    layer = idm.net.recurrent_layer.blocks[0].r.orc_block
    m = memory - 16
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 32, generator=g)
    cache = (torch.ones(2, 1, m, dtype=torch.bool), torch.randn(2, m, 32, generator=g), torch.randn(2, m, 32, generator=g))
    with torch.no_grad():
        got, state = layer(x, torch.ones(2, 7, dtype=torch.bool), cache)  # `first` is ignored, as in the original
        expected = _naive_unmasked_attention(layer, x, cache[1], cache[2])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        keys = torch.cat([cache[1], layer.k_layer(x)], 1)
    assert state[1].shape == (2, m, 32)  # the cache keeps the last M keys (none for the 4x layout)
    torch.testing.assert_close(state[1], keys[:, keys.shape[1] - m :])
