"""Action space: joint <-> factored <-> env, camera quantiser (mu-law, 11 bins)."""

from __future__ import annotations

import numpy as np
import pytest

from vpt_model.action_space import (
    CAMERA_NULL_BIN,
    ENV_BUTTONS,
    FACTORED_BUTTONS,
    INVENTORY_BUTTON_INDEX,
    N_BUTTON_COMBOS,
    N_CAMERA_COMBOS,
    NULL_CAMERA_INDEX,
    discretize_camera,
    env_action_to_joint,
    env_actions_to_arrays,
    env_arrays_to_joint,
    joint_to_env_action,
    joint_to_factored,
    undiscretize_camera,
)

BIN_CENTRES = [-10, -5.8095, -3.2154, -1.6095, -0.6154, 0, 0.6154, 1.6095, 3.2154, 5.8095, 10]


def test_camera_bin_centres_match_spec():
    np.testing.assert_allclose(undiscretize_camera(np.arange(11)), BIN_CENTRES, atol=1e-4)
    assert list(discretize_camera(np.array(BIN_CENTRES))) == list(range(11))


def test_camera_quantiser_rounds_and_clips():
    assert discretize_camera(np.array([0.2]))[0] == 5  # below half a bin -> null
    assert discretize_camera(np.array([0.4]))[0] == 6
    assert discretize_camera(np.array([-45.0]))[0] == 0  # clipped to -10 degrees
    assert discretize_camera(np.array([1000.0]))[0] == 10


def _consistent_camera_indices(joint_button: int, camera_flag: bool) -> list[int]:
    if joint_button == INVENTORY_BUTTON_INDEX or not camera_flag:
        return [NULL_CAMERA_INDEX]
    return [c for c in range(N_CAMERA_COMBOS) if c != NULL_CAMERA_INDEX]


def test_every_joint_action_survives_env_round_trip():
    checked = 0
    for b in range(N_BUTTON_COMBOS):
        camera_flag = b != INVENTORY_BUTTON_INDEX and b % 2 == 1  # camera meta is the fastest radix digit
        cams = _consistent_camera_indices(b, camera_flag)
        buttons, bins = joint_to_factored(np.full(len(cams), b), np.array(cams))
        env = [joint_to_env_action(b, c) for c in cams[:3]]  # the dict path for a few
        assert [env_action_to_joint(a) for a in env] == [(b, c) for c in cams[:3]]
        env_buttons = np.concatenate([buttons, np.zeros((len(cams), 3), dtype=buttons.dtype)], axis=1)
        jb, jc = env_arrays_to_joint(env_buttons, undiscretize_camera(bins))
        assert (jb == b).all() and list(jc) == cams
        checked += len(cams)
    assert checked == 8640 // 2 * 120 + 8640 // 2 + 1  # camera-on combos x 120 + camera-off + inventory


def test_known_env_actions_map_to_known_indices():
    camera_move = np.array([3.0, -2.0], dtype=np.float32)
    assert env_action_to_joint({"forward": 1, "attack": 1, "jump": 1, "camera": camera_move}) == (295, 8 * 11 + 3)
    assert env_action_to_joint({"camera": np.zeros(2)}) == (0, NULL_CAMERA_INDEX)
    assert env_action_to_joint({"forward": 1, "attack": 1, "jump": 1, "camera": np.zeros(2)}) == (294, 60)
    # inventory wins over everything and nulls the camera
    assert env_action_to_joint({"inventory": 1, "forward": 1, "camera": camera_move}) == (INVENTORY_BUTTON_INDEX, 60)
    # hotbar.9 alone: hotbar is the slowest digit, 9 * (3*3*3*2*2*2*2*2)
    assert env_action_to_joint({"hotbar.9": 1, "camera": np.zeros(2)}) == (9 * 864, 60)


def test_group_rules_opposites_cancel_later_wins():
    base = {"camera": np.zeros(2)}
    assert env_action_to_joint({**base, "forward": 1, "back": 1}) == (0, 60)
    assert env_action_to_joint({**base, "left": 1, "right": 1}) == (0, 60)
    sneak = env_action_to_joint({**base, "sneak": 1})
    assert env_action_to_joint({**base, "sprint": 1, "sneak": 1}) == sneak
    hotbar2 = env_action_to_joint({**base, "hotbar.2": 1})
    assert env_action_to_joint({**base, "hotbar.1": 1, "hotbar.2": 1}) == hotbar2
    # ESC / pickItem / swapHands are not part of the agent's space
    assert env_action_to_joint({**base, "ESC": 1, "pickItem": 1, "swapHands": 1}) == (0, 60)


def test_env_dict_has_every_minerl_button():
    action = joint_to_env_action(295, 0)
    assert set(action) == set(ENV_BUTTONS) | {"camera"}
    np.testing.assert_allclose(action["camera"], [-10.0, -10.0])
    assert action["forward"] == action["attack"] == action["jump"] == 1


def test_arrays_from_dicts_keep_order():
    buttons, camera = env_actions_to_arrays([{"attack": 1, "hotbar.9": np.array(1), "camera": [1.5, -2.5]}])
    assert buttons.shape == (1, 23) and buttons[0, FACTORED_BUTTONS.index("attack")] == 1
    assert buttons[0, ENV_BUTTONS.index("hotbar.9")] == 1 and buttons.sum() == 2
    np.testing.assert_allclose(camera, [[1.5, -2.5]])


def test_out_of_range_joint_index_is_refused():
    with pytest.raises(ValueError):
        joint_to_factored(np.array([N_BUTTON_COMBOS]), np.array([0]))
    with pytest.raises(ValueError):
        joint_to_factored(np.array([0]), np.array([-1]))


def test_camera_null_bin_constant():
    assert CAMERA_NULL_BIN == 5 and NULL_CAMERA_INDEX == 60
