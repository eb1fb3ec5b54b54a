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
    factored_to_joint,
    joint_to_env_action,
    joint_to_factored,
    undiscretize_camera,
)

BIN_CENTRES = [-10, -5.8095, -3.2154, -1.6095, -0.6154, 0, 0.6154, 1.6095, 3.2154, 5.8095, 10]

# SPEC section 4, written out independently of vpt_model.action_space: the joint button index is a mixed-radix
# number over these groups (last fastest); index 8640 is inventory alone.
SPEC_RADICES = (10, 3, 3, 3, 2, 2, 2, 2, 2)  # hotbar, fore_back, left_right, sprint_sneak, use, drop, attack, jump, camera meta
SPEC_GROUPS = (
    (None,) + tuple(f"hotbar.{i}" for i in range(1, 10)),
    (None, "forward", "back"),
    (None, "left", "right"),
    (None, "sprint", "sneak"),
    (None, "use"),
    (None, "drop"),
    (None, "attack"),
    (None, "jump"),
)
SPEC_INVENTORY = 8640
SPEC_NULL_BIN = 5


def spec_joint_to_factored(joint_buttons: np.ndarray, joint_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factored buttons and camera bins per the spec: the camera is null when the camera meta digit is off,
    and passes through unchanged for inventory."""
    regular = joint_buttons != SPEC_INVENTORY
    digits = np.unravel_index(np.where(regular, joint_buttons, 0), SPEC_RADICES)
    buttons = np.zeros((len(joint_buttons), len(FACTORED_BUTTONS)), dtype=np.int64)
    for digit, options in zip(digits[:-1], SPEC_GROUPS):
        for value, name in enumerate(options):
            if name is not None:
                buttons[regular & (digit == value), FACTORED_BUTTONS.index(name)] = 1
    buttons[~regular, FACTORED_BUTTONS.index("inventory")] = 1
    camera_passes = ~regular | (digits[-1] == 1)
    bins = np.stack([joint_camera // 11, joint_camera % 11], axis=1)
    return buttons, np.where(camera_passes[:, None], bins, SPEC_NULL_BIN)


def spec_factored_to_joint(buttons: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint indices per the spec: per group the later-listed pressed button wins, opposite movement keys
    together mean none, camera meta = camera bins not (5, 5); inventory overrides everything, camera null."""
    digits = []
    for options in SPEC_GROUPS:
        choice = np.zeros(len(buttons), dtype=np.int64)
        for value, name in enumerate(options):
            if name is not None:
                choice[buttons[:, FACTORED_BUTTONS.index(name)] != 0] = value  # later options overwrite
        if options[1] in ("forward", "left"):
            both = (buttons[:, FACTORED_BUTTONS.index(options[1])] != 0) & (buttons[:, FACTORED_BUTTONS.index(options[2])] != 0)
            choice[both] = 0
        digits.append(choice)
    camera_meta = np.any(bins != SPEC_NULL_BIN, axis=1).astype(np.int64)
    joint = np.ravel_multi_index(digits + [camera_meta], SPEC_RADICES)
    joint_camera = bins[:, 0] * 11 + bins[:, 1]
    inventory = buttons[:, FACTORED_BUTTONS.index("inventory")] != 0
    return np.where(inventory, SPEC_INVENTORY, joint), np.where(inventory, 60, joint_camera)


def test_camera_bin_centres_match_spec():
    np.testing.assert_allclose(undiscretize_camera(np.arange(11)), BIN_CENTRES, atol=1e-4)
    assert list(discretize_camera(np.array(BIN_CENTRES))) == list(range(11))


def test_camera_quantiser_rounds_and_clips():
    assert discretize_camera(np.array([0.2]))[0] == 5  # below half a bin -> null
    assert discretize_camera(np.array([0.4]))[0] == 6
    assert discretize_camera(np.array([-45.0]))[0] == 0  # clipped to -10 degrees
    assert discretize_camera(np.array([1000.0]))[0] == 10


def test_every_joint_pair_maps_as_the_spec_says_in_both_directions():
    """All 8641 x 121 (button, camera) pairs: joint -> factored, factored -> joint and env -> joint."""
    joint_buttons = np.repeat(np.arange(N_BUTTON_COMBOS), N_CAMERA_COMBOS)
    joint_camera = np.tile(np.arange(N_CAMERA_COMBOS), N_BUTTON_COMBOS)
    want_buttons, want_bins = spec_joint_to_factored(joint_buttons, joint_camera)
    buttons, bins = joint_to_factored(joint_buttons, joint_camera)  # (8641 * 121, 20), (8641 * 121, 2)
    np.testing.assert_array_equal(buttons, want_buttons)
    np.testing.assert_array_equal(bins, want_bins)
    want_joint = spec_factored_to_joint(want_buttons, want_bins)
    # unchanged round trip: camera meta on with a moving camera, or camera off / inventory with the null camera
    unchanged = (want_joint[0] == joint_buttons) & (want_joint[1] == joint_camera)
    assert unchanged.sum() == 4320 * 120 + 4320 + 1
    np.testing.assert_array_equal(factored_to_joint(buttons, bins), want_joint)
    env_buttons = np.concatenate([buttons, np.zeros((len(buttons), 3), dtype=buttons.dtype)], axis=1)
    np.testing.assert_array_equal(env_arrays_to_joint(env_buttons, undiscretize_camera(bins)), want_joint)
    # the MineRL dict path, for a spread of pairs
    for i in range(0, len(joint_buttons), 9973):
        action = joint_to_env_action(joint_buttons[i], joint_camera[i])
        assert env_action_to_joint(action) == (want_joint[0][i], want_joint[1][i])


def test_inventory_keeps_the_sampled_camera():
    """The original's to_factored passes the camera through for inventory (it is not nulled)."""
    for c in (0, 7, 120):
        buttons, bins = joint_to_factored(np.array([INVENTORY_BUTTON_INDEX]), np.array([c]))
        assert buttons[0].tolist() == [int(name == "inventory") for name in FACTORED_BUTTONS]
        assert bins[0].tolist() == [c // 11, c % 11]
    action = joint_to_env_action(INVENTORY_BUTTON_INDEX, 0)
    assert action["inventory"] == 1 and sum(action[name] for name in ENV_BUTTONS) == 1
    np.testing.assert_allclose(action["camera"], [-10.0, -10.0])


def test_every_factored_button_combination_maps_as_the_spec_says():
    """All 2^20 factored button rows (several buttons of a group at once, opposite keys, inventory)."""
    n = 1 << len(FACTORED_BUTTONS)
    buttons = ((np.arange(n)[:, None] >> np.arange(len(FACTORED_BUTTONS))) & 1).astype(np.uint8)
    rng = np.random.default_rng(0)
    bins = np.where(rng.random((n, 1)) < 0.5, SPEC_NULL_BIN, rng.integers(0, 11, size=(n, 2)))
    got = factored_to_joint(buttons, bins)
    want = spec_factored_to_joint(buttons, bins)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


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
