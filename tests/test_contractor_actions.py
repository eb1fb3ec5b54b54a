"""Recorded jsonl -> env actions and labels: one case per rule of the original STEVE-1 / VPT converters
(SPEC.md section 5), one per recorder-version quirk, and the labelling options.

Expected values are written out from the rules: camera = [dy, dx] * 0.15 degrees, truncated toward zero by
default; keys/mouse buttons 0-2 map to buttons; a hotbar change presses that slot; null = no mapped key, no
mouse button 0-2, no mouse motion. (Checked against the original code on 3,000 random lines: identical.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from data.generation.contractor_actions import (
    CONTRACTOR_FORMAT,
    ENV_ACTION_FORMAT,
    ActionFileError,
    convert_contractor_lines,
    jsonl_start_problem,
    load_actions_file,
)
from data.generation.cursor import draw_cursor
from data.generation.labelling import keep_mask, label_camera
from vpt_model.action_space import ENV_BUTTONS


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


def write_jsonl(path, values):
    path.write_text("".join(json.dumps(v) + "\n" for v in values))
    return path


def test_key_mapping():
    keys = ["key.keyboard.w", "key.keyboard.space", "key.keyboard.left.control", "key.keyboard.e", "key.keyboard.3",
            "key.keyboard.q", "key.keyboard.escape", "key.keyboard.f", "key.keyboard.z"]
    a = convert_contractor_lines([line(keys=keys), line(keys=["key.keyboard.s", "key.keyboard.a", "key.keyboard.d",
                                                               "key.keyboard.left.shift"])])
    assert pressed(a, 0) == {"forward", "jump", "sprint", "inventory", "hotbar.3", "drop", "ESC", "swapHands"}
    assert pressed(a, 1) == {"back", "left", "right", "sneak"}


def test_mouse_buttons_and_camera_truncated_by_default_float_on_request():
    a = convert_contractor_lines([line(buttons=[0, 1, 2], new_buttons=[1], dx=10, dy=-3), line(dx=-13, dy=7)])
    assert pressed(a, 0) == {"attack", "use", "pickItem"}
    # [dy, dx] * 0.15: [-0.45, 1.5] and [1.05, -1.95]; the original's int array truncates toward zero
    np.testing.assert_array_equal(label_camera(a.env_camera, "truncated"), [[0, 1], [1, -1]])
    np.testing.assert_allclose(label_camera(a.env_camera, "float"), [[-0.45, 1.5], [1.05, -1.95]], rtol=1e-6)
    assert label_camera(a.env_camera, "truncated").dtype == np.float32


def test_truncation_runs_in_float64_like_the_original():
    # 20 px * 0.15 = 3.0000000000000004 and 6.6666665 px * 0.15 = 0.99999998 in float64; float32 would round
    # the second up to 1.0 before truncating.
    a = convert_contractor_lines([line(dx=20, dy=6.6666665)])
    np.testing.assert_array_equal(label_camera(a.env_camera, "truncated"), [[0, 3]])


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
    assert list(a.env_null) == [True, False, False, False]
    not_stuck = convert_contractor_lines([line(buttons=[0], new_buttons=[0, 1])])  # newButtons != [0]
    assert pressed(not_stuck, 0) == {"attack"}


def test_null_rules_env_versus_agent():
    lines = [
        line(),  # nothing: null under both
        line(dx=1),  # 0.15 degrees: env non-null; truncated to 0 -> agent null
        line(keys=["key.keyboard.escape"]),  # ESC: env non-null, not in agent space -> agent null
        line(hotbar=2),  # scroll to slot 3: env null (original), agent non-null (hotbar.3)
        line(hotbar=2, keys=["key.keyboard.w"]),  # forward: non-null under both
        line(dx=7),  # 1.05 degrees: truncated to 1, both in camera bin 6: non-null under every rule
    ]
    a = convert_contractor_lines(lines)
    truncated, floats = label_camera(a.env_camera, "truncated"), label_camera(a.env_camera, "float")
    assert list(keep_mask(a.env_buttons, truncated, a.env_null, "env")) == [False, True, True, False, True, True]
    assert list(keep_mask(a.env_buttons, truncated, a.env_null, "agent")) == [False, False, False, True, True, True]
    assert list(keep_mask(a.env_buttons, floats, a.env_null, "agent")) == [False, False, False, True, True, True]
    assert keep_mask(a.env_buttons, truncated, a.env_null, "none").all()
    # 2 px = 0.3 degrees: float labels land in camera bin 6 (kept by "agent"), truncated labels are 0 (dropped)
    b = convert_contractor_lines([line(dx=2)])
    assert keep_mask(b.env_buttons, label_camera(b.env_camera, "float"), b.env_null, "agent")[0]
    assert not keep_mask(b.env_buttons, label_camera(b.env_camera, "truncated"), b.env_null, "agent")[0]


def test_gui_cursor_position_recorded_and_drawn():
    a = convert_contractor_lines([line(gui=True, x=200, y=100)])
    assert a.gui_open[0] and tuple(a.cursor_xy[0]) == (200, 100)
    frame = np.zeros((360, 640, 3), np.uint8)
    draw_cursor(frame, 200, 100)  # recording pixels (720p) -> this frame's 360p: (100, 50)
    assert frame[50:66, 100:116].any() and not frame[:50].any() and not frame[:, :100].any()


# ---------------------------------------------------------------------------------------------
# Recorder versions (VPT data notes): each quirk converts to the recorder's meaning.


def test_lines_without_hotbar_field_never_change_the_hotbar():
    """Before 6.11 lines have no `hotbar`: the slot never changes, only keys 1-9 select one."""
    lines = [line(keys=["key.keyboard.w"]), line(), line(keys=["key.keyboard.3"]), line(dx=14)]
    for item in lines:
        del item["hotbar"]
    a = convert_contractor_lines(lines)
    assert [pressed(a, i) for i in range(4)] == [{"forward"}, set(), {"hotbar.3"}, set()]
    assert list(a.env_null) == [False, True, False, False]
    np.testing.assert_array_equal(label_camera(a.env_camera, "truncated")[3], [0, 2])  # 14 * 0.15 = 2.1


def test_null_mouse_or_keyboard_means_no_input_from_that_device():
    """Before 6.13 `mouse` or `keyboard` can be null: nothing from that device that frame."""
    lines = [
        {**line(), "mouse": None, "keyboard": {"keys": ["key.keyboard.w"]}},  # keys still count
        {**line(), "mouse": None},  # nothing at all: a null action
        {**line(dx=10, buttons=[1]), "keyboard": None},  # mouse still counts
        {**line(), "mouse": None, "keyboard": None, "hotbar": 4},  # a hotbar change alone: pressed, env-null
    ]
    a = convert_contractor_lines(lines)
    assert [pressed(a, i) for i in range(4)] == [{"forward"}, set(), {"use"}, {"hotbar.5"}]
    assert list(a.env_null) == [False, True, False, True]
    np.testing.assert_array_equal(label_camera(a.env_camera, "truncated"), [[0, 0], [0, 0], [0, 1], [0, 0]])


def test_a_null_line_is_a_null_action_and_keeps_its_frame():
    lines = [line(keys=["key.keyboard.w"], hotbar=2), None, line(keys=["key.keyboard.w"], hotbar=2), line(hotbar=3)]
    a = convert_contractor_lines(lines)
    assert len(a) == 4  # line i still belongs to frame i
    # the null line keeps the hotbar where it was: no spurious hotbar.3 on the line after it
    assert [pressed(a, i) for i in range(4)] == [{"forward", "hotbar.3"}, set(), {"forward"}, {"hotbar.4"}]
    assert list(a.env_null) == [False, True, False, True]


def test_mouse_button_ids_above_two_map_to_nothing():
    a = convert_contractor_lines([line(buttons=[3, 4, 7]), line(buttons=[4, 1])])
    assert [pressed(a, i) for i in range(2)] == [set(), {"use"}]
    assert list(a.env_null) == [True, False]


def test_null_first_line_neither_changes_the_format_nor_sticks_attack(tmp_path):
    """A file whose line 1 has `"mouse": null` is still contractor lines (the format comes from the whole file)."""
    lines = [{**line(), "mouse": None}, line(buttons=[0], new_buttons=[0]), line(buttons=[0])]
    a = load_actions_file(write_jsonl(tmp_path / "a.jsonl", lines))
    assert a.file_format == CONTRACTOR_FORMAT
    assert [pressed(a, i) for i in range(3)] == [set(), {"attack"}, {"attack"}]  # stuck only if line 1 says so
    only_nulls = load_actions_file(write_jsonl(tmp_path / "b.jsonl", [None, line()]))
    assert only_nulls.file_format == CONTRACTOR_FORMAT and list(only_nulls.env_null) == [True, True]


def test_gui_frame_with_null_mouse_keeps_the_cursor_where_it_was():
    lines = [line(gui=True, x=300, y=200), {**line(gui=True), "mouse": None}, {**line(gui=True), "mouse": None}]
    a = convert_contractor_lines(lines)
    np.testing.assert_array_equal(a.cursor_xy, [[300, 200]] * 3)
    unknown = convert_contractor_lines([{**line(gui=True), "mouse": None}])
    assert np.isnan(unknown.cursor_xy[0]).all()  # never seen: not drawn


# ---------------------------------------------------------------------------------------------
# Env-action files (custom recordings)


def test_env_action_lines_are_accepted(tmp_path):
    path = write_jsonl(tmp_path / "actions.jsonl", [{"forward": 1, "camera": [1.5, -2.25]}, {"camera": [0, 0]}, None,
                                                    {"jump": True, "attack": 0}])
    a = load_actions_file(path)
    assert a.file_format == ENV_ACTION_FORMAT
    assert [pressed(a, i) for i in range(4)] == [{"forward"}, set(), set(), {"jump"}]
    assert list(a.env_null) == [False, True, True, False]
    np.testing.assert_array_equal(label_camera(a.env_camera, "truncated")[0], [1, -2])
    np.testing.assert_allclose(label_camera(a.env_camera, "float")[0], [1.5, -2.25])


def test_download_content_check_of_a_jsonl(tmp_path):
    assert jsonl_start_problem(write_jsonl(tmp_path / "a.jsonl", [line()])) is None
    assert jsonl_start_problem(write_jsonl(tmp_path / "n.jsonl", [None, line()])) is None
    (tmp_path / "x.jsonl").write_text('<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code></Error>')
    assert jsonl_start_problem(tmp_path / "x.jsonl") == "first line is not JSON (starts with b'<?xml version=\"1.0\" enco')"
    (tmp_path / "e.jsonl").write_text("")
    assert jsonl_start_problem(tmp_path / "e.jsonl") == "empty file"
    (tmp_path / "l.jsonl").write_text("[1, 2]\n")
    assert jsonl_start_problem(tmp_path / "l.jsonl") == "first line is a list [1, 2], not an action object"


def test_a_broken_rule_names_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [line(), line(), {**line(), "hotbar": 42}])
    with pytest.raises(ActionFileError) as error:
        load_actions_file(path)
    assert str(error.value) == f"{path}:3: hotbar: 42 is outside 0..8"
