"""Loading and saving model files: strict weights, prefixes, clear errors, safe .model reading."""

from __future__ import annotations

import pickle

import pytest
import torch

from model_file_factory import write_model_file
from conftest import random_obs, randomize_
from embed_conditioned_policy import GOAL_LAYER_KEYS, SteveAgentPolicy
from vpt_model.config import PolicyConfig, preset
from vpt_model.model_files import (
    load_policy_config,
    load_policy_weights,
    read_model_file,
    save_policy_weights,
)
from toolkit_utils.state_dicts import StateDictMismatchError
from vpt_model.policy import MinecraftAgentPolicy


def _outputs(policy):
    obs = random_obs(1, 4, seed=11)
    with torch.no_grad():
        pd, v, _ = policy(obs, torch.zeros(1, 4, dtype=torch.bool), policy.initial_state(1))
    return pd["buttons"], pd["camera"], v


def test_save_load_round_trip(tiny_policy, tiny_config, tmp_path):
    path = tmp_path / "steve1.weights"
    save_policy_weights(tiny_policy, path)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == set(tiny_policy.state_dict())  # plain state dict, no prefixes
    fresh = SteveAgentPolicy(tiny_config).eval()
    assert load_policy_weights(fresh, path) == []
    for a, b in zip(_outputs(tiny_policy), _outputs(fresh)):
        assert torch.equal(a, b)


def test_wrong_shape_missing_and_unexpected_keys_are_named(tiny_policy, tiny_config, tmp_path):
    sd = dict(tiny_policy.state_dict())
    sd["pi_head.camera.linear_layer.weight"] = torch.zeros(7, 3)
    del sd["net.final_ln.bias"]
    sd["net.extra_layer.weight"] = torch.zeros(2)
    path = tmp_path / "bad.weights"
    torch.save(sd, path)
    with pytest.raises(StateDictMismatchError) as err:
        load_policy_weights(SteveAgentPolicy(tiny_config), path)
    message = str(err.value)
    assert "net.final_ln.bias" in message and "missing" in message
    assert "net.extra_layer.weight" in message and "unexpected" in message
    assert "pi_head.camera.linear_layer.weight: file (7, 3) vs model (121, 32)" in message
    assert str(path) in message


def test_vpt_weights_into_steve1_leave_only_goal_layer_missing(tiny_config, tmp_path, capsys):
    vpt = MinecraftAgentPolicy(tiny_config)
    randomize_(vpt)
    path = tmp_path / "rl-from-foundation.weights"
    save_policy_weights(vpt, path)
    steve = SteveAgentPolicy(tiny_config)
    # strict by default: the goal layer is reported missing
    with pytest.raises(StateDictMismatchError, match="net.mineclip_embed_linear.weight"):
        load_policy_weights(steve, path)
    tolerated = load_policy_weights(steve, path, allow_missing=GOAL_LAYER_KEYS)
    assert sorted(tolerated) == sorted(GOAL_LAYER_KEYS)
    assert "mineclip_embed_linear" in capsys.readouterr().out
    for k, v in vpt.state_dict().items():
        assert torch.equal(steve.state_dict()[k], v)


def test_model_file_round_trip_and_2x_layout(tmp_path):
    config = preset("tiny")
    path = tmp_path / "tiny.model"
    write_model_file(config, path)
    assert load_policy_config(path) == config
    # a file shaped like the real 2x.model (plain pickle, nested dicts)
    net_args, pi_head = preset("2x").to_policy_kwargs()
    real_like = tmp_path / "2x.model"
    real_like.write_bytes(pickle.dumps({"model": {"args": {"net": {"args": net_args}, "pi_head_opts": pi_head}}}))
    args, opts = read_model_file(real_like)
    assert args["hidsize"] == 2048 and opts == {"temperature": 2.0}
    assert PolicyConfig.from_policy_kwargs(args, opts) == preset("2x")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_model_file_that_builds_objects_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.model"
    path.write_bytes(pickle.dumps({"model": {"args": {"net": {"args": {"hidsize": _Evil()}}}}}))
    with pytest.raises(ValueError, match="refusing to build object builtins.print"):
        read_model_file(path)
    assert "must never run" not in capsys.readouterr().out


def test_unsupported_architecture_is_refused():
    net_args, _ = preset("2x").to_policy_kwargs()
    net_args["recurrence_type"] = "multi_layer_lstm"
    with pytest.raises(ValueError, match="recurrence_type"):
        PolicyConfig.from_policy_kwargs(net_args, {})


def test_model_file_with_numpy_scalars_loads_as_plain_numbers(tmp_path):
    import numpy as np

    net_args, _ = preset("2x").to_policy_kwargs()
    net_args["hidsize"] = np.int64(2048)
    path = tmp_path / "np.model"
    path.write_bytes(pickle.dumps({"model": {"args": {"net": {"args": net_args}, "pi_head_opts": {"temperature": np.float64(2.0)}}}}))
    args, opts = read_model_file(path)
    assert type(args["hidsize"]) is int and type(opts["temperature"]) is float
    assert PolicyConfig.from_policy_kwargs(args, opts) == preset("2x")


def test_preset_names_are_every_preset():
    from vpt_model.config import PRESET_NAMES

    for name in PRESET_NAMES:
        preset(name)
    with pytest.raises(ValueError, match=r"choose one of \['1x', '2x', '3x', 'tiny'\]"):
        preset("4x")
    assert sorted(PRESET_NAMES) == ["1x", "2x", "3x", "tiny"]


def test_weights_given_as_the_model_file_are_named_as_such(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "steve1.weights")
    with pytest.raises(ValueError, match=r"steve1.weights: a torch.save file \(weights\?\), not a VPT .model file"):
        read_model_file(tmp_path / "steve1.weights")


def test_weights_of_another_architecture_name_the_one_they_fit(tmp_path):
    from toolkit_utils import cli
    from training.checks import check_policy_files

    save_policy_weights(SteveAgentPolicy(preset("tiny")), tmp_path / "tiny.weights")
    with pytest.raises(cli.SettingError) as error:
        check_policy_files("2x", [str(tmp_path / "tiny.weights")], GOAL_LAYER_KEYS)
    assert str(error.value).startswith(f"--in_weights {tmp_path}/tiny.weights: {tmp_path}/tiny.weights does not match")
    assert str(error.value).endswith("; these weights fit the tiny architecture: give its .model as --in_model (IN_MODEL)")
    state = SteveAgentPolicy(preset("tiny")).state_dict()
    state["pi_head.camera.linear_layer.bias"] = torch.zeros(3)  # fits no architecture
    torch.save(state, tmp_path / "odd.weights")
    with pytest.raises(cli.SettingError, match=r"; use weights of the --in_model architecture \(tiny\)$"):
        check_policy_files("tiny", [str(tmp_path / "odd.weights")], GOAL_LAYER_KEYS)
