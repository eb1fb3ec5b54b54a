"""Contractor jsonl -> env and agent actions: one case per conversion rule of the original STEVE-1 / VPT code."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data.generation.contractor_actions import (
    ActionFileError,
    convert_contractor_lines,
    load_actions_file,
    read_jsonl,
)
from vpt_model.action_space import ENV_BUTTONS, env_arrays_to_joint


def line(keys=(), buttons=(), new_buttons=(), dx=0.0, dy=0.0, hotbar=0, gui=False, x=0.0, y=0.0):
    return {
        "mouse": {"x": x, "y": y, "dx": dx, "dy": dy, "buttons": list(buttons), "newButtons": list(new_buttons), "dwheel": 0},
        "keyboard": {"keys": list(keys), "newKeys": []},
        "isGuiOpen": gui,
        "hotbar": hotbar,
        "yaw": 0.0,
        "pitch": 0.0,
        "tick": 0,
    }


def pressed(actions, i):
    return {ENV_BUTTONS[j] for j in np.flatnonzero(actions.env_buttons[i])}


def test_key_mapping():
    keys = ["key.keyboard.w", "key.keyboard.space", "key.keyboard.left.control", "key.keyboard.e", "key.keyboard.3",
            "key.keyboard.q", "key.keyboard.escape", "key.keyboard.f", "key.keyboard.z"]
    a = convert_contractor_lines([line(keys=keys), line(keys=["key.keyboard.s", "key.keyboard.a", "key.keyboard.d",
                                                               "key.keyboard.left.shift"])])
    assert pressed(a, 0) == {"forward", "jump", "sprint", "inventory", "hotbar.3", "drop", "ESC", "swapHands"}
    assert pressed(a, 1) == {"back", "left", "right", "sneak"}


def test_mouse_buttons_and_camera_in_float_degrees():
    a = convert_contractor_lines([line(buttons=[0, 1, 2], new_buttons=[1], dx=10, dy=-3)])
    assert pressed(a, 0) == {"attack", "use", "pickItem"}
    np.testing.assert_allclose(a.env_camera[0], [-0.45, 1.5])  # [dy, dx] * 0.15


def test_truncation_flag_reproduces_whole_degree_bug():
    lines = [line(dx=10, dy=-3), line(dx=-13, dy=7)]
    np.testing.assert_allclose(convert_contractor_lines(lines, truncate_camera=True).env_camera, [[0, 1], [1, -1]])
    np.testing.assert_allclose(convert_contractor_lines(lines).env_camera, [[-0.45, 1.5], [1.05, -1.95]], rtol=1e-6)


def test_hotbar_change_selects_slot_only_on_change():
    a = convert_contractor_lines([line(hotbar=0), line(hotbar=4), line(hotbar=4), line(hotbar=0)])
    assert [pressed(a, i) for i in range(4)] == [set(), {"hotbar.5"}, set(), {"hotbar.1"}]


def test_stuck_attack_is_dropped_until_pressed_again():
    lines = [
        line(buttons=[0], new_buttons=[0]),  # recording starts with attack held: stuck
        line(buttons=[0, 1], new_buttons=[1]),  # still stuck: attack removed, use kept
        line(buttons=[0], new_buttons=[0]),  # pressed anew: released from stuck
        line(buttons=[0]),
    ]
    a = convert_contractor_lines(lines)
    assert [pressed(a, i) for i in range(4)] == [set(), {"use"}, {"attack"}, {"attack"}]
    not_stuck = convert_contractor_lines([line(buttons=[0], new_buttons=[0, 1])])  # newButtons != [0]
    assert pressed(not_stuck, 0) == {"attack"}


def test_null_rules_env_versus_agent():
    lines = [
        line(),  # nothing: null under both
        line(dx=1),  # 0.15 degrees: env non-null, agent camera bin 5 -> agent null
        line(keys=["key.keyboard.escape"]),  # ESC: env non-null, not in agent space -> agent null
        line(hotbar=2),  # scroll to slot 3: env null (original), agent non-null (hotbar.3)
        line(hotbar=2, keys=["key.keyboard.w"]),  # forward: non-null under both
    ]
    a = convert_contractor_lines(lines)
    assert list(a.env_null) == [True, False, False, True, False]
    assert list(a.agent_null) == [True, True, True, False, False]
    joint_buttons, joint_camera = env_arrays_to_joint(a.env_buttons, a.env_camera)
    assert joint_buttons[0] == 0 and joint_camera[1] == 60


def test_gui_cursor_position_recorded():
    a = convert_contractor_lines([line(gui=True, x=200.75, y=100)])  # drawing it: tests/test_cursor.py
    assert a.gui_open[0] and tuple(a.cursor_xy[0]) == (200.75, 100)


def test_truncated_and_malformed_jsonl(tmp_path):
    good = json.dumps(line(keys=["key.keyboard.w"]))
    path = tmp_path / "cut.jsonl"
    path.write_text(good + "\n" + good[: len(good) // 2])
    with pytest.raises(ActionFileError, match=r"cut.jsonl: line 2 is not valid JSON"):
        read_jsonl(path)
    missing = tmp_path / "missing_field.jsonl"
    missing.write_text(json.dumps({"mouse": {"dx": 0}, "keyboard": {"keys": []}}) + "\n")
    with pytest.raises(ActionFileError, match="missing_field.jsonl: line 1 lacks"):
        load_actions_file(missing)


def test_env_action_lines_are_accepted(tmp_path):
    path = tmp_path / "actions.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [{"forward": 1, "camera": [1.0, -2.0]}, {"camera": [0, 0]}]))
    a = load_actions_file(path)
    assert pressed(a, 0) == {"forward"} and list(a.env_null) == [False, True]
    np.testing.assert_allclose(a.env_camera[0], [1.0, -2.0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"fly": 1}))
    with pytest.raises(ActionFileError, match="unknown action key 'fly'"):
        load_actions_file(bad)
