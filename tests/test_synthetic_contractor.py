"""The generated recordings of the demo: their labels mean the same under every labelling rule."""

from __future__ import annotations

import numpy as np

from data.generation.contractor_actions import convert_contractor_lines, read_action_lines
from data.generation.labelling import keep_mask, label_camera
from data.generation.synthetic_contractor import BEHAVIOURS, write_synthetic_recording
from vpt_model.action_space import env_arrays_to_joint


def test_labels_agree_across_options_and_every_action_appears(tmp_path):
    _, jsonl = write_synthetic_recording(tmp_path, "rec", 150, seed=3)
    actions = convert_contractor_lines(read_action_lines(jsonl))
    floats, truncated = label_camera(actions.env_camera, "float"), label_camera(actions.env_camera, "truncated")
    np.testing.assert_array_equal(floats, truncated)  # whole degrees: truncation changes nothing
    keep = keep_mask(actions.env_buttons, truncated, actions.env_null, "env")
    np.testing.assert_array_equal(keep, keep_mask(actions.env_buttons, floats, actions.env_null, "agent"))  # same frames
    assert not keep[0] and 0 < 1 - keep.mean() < 0.15  # starts idle; few null frames
    joint = set(zip(*env_arrays_to_joint(actions.env_buttons[keep], truncated[keep])))
    assert len(joint) == len(BEHAVIOURS)  # one round: every behaviour, each a distinct action
    buttons = {b for b, _ in joint}
    cameras = {c for _, c in joint}
    assert len(buttons) == 7 and len(cameras) == 7  # no constant guess is right more than ~1/4 of the time
    assert actions.gui_open[keep].any()
