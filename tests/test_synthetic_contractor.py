"""The generated recordings of the demo: their labels mean the same under every conversion option."""

from __future__ import annotations

import numpy as np

from data.generation.contractor_actions import convert_contractor_lines, read_jsonl
from data.generation.synthetic_contractor import BEHAVIOURS, write_synthetic_recording
from vpt_model.action_space import env_arrays_to_joint


def test_labels_agree_across_options_and_every_action_appears(tmp_path):
    _, jsonl = write_synthetic_recording(tmp_path, "rec", 150, seed=3)
    lines = read_jsonl(jsonl)
    floats, truncated = convert_contractor_lines(lines), convert_contractor_lines(lines, truncate_camera=True)
    np.testing.assert_array_equal(floats.env_camera, truncated.env_camera)  # whole degrees: truncation changes nothing
    np.testing.assert_array_equal(floats.env_null, floats.agent_null)  # both null rules drop the same lines
    assert floats.env_null[0] and 0 < floats.env_null.mean() < 0.15  # starts idle; few null frames
    keep = ~floats.env_null
    joint = set(zip(*env_arrays_to_joint(floats.env_buttons[keep], floats.env_camera[keep])))
    assert len(joint) == len(BEHAVIOURS)  # one round: every behaviour, each a distinct action
    buttons = {b for b, _ in joint}
    cameras = {c for _, c in joint}
    assert len(buttons) == 7 and len(cameras) == 7  # no constant guess is right more than ~1/4 of the time
    assert floats.gui_open[keep].any()
