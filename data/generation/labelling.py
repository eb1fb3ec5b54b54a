"""The labelling rules: how recorded actions become the training labels of an episode.

Defaults are the original STEVE-1 rules, because they made the data the released `steve1.weights` learned
from, and fine-tuning should continue that label distribution:
- camera_labels "truncated": the camera in whole degrees, truncated toward zero (the original stored
  [dy, dx] * 0.15 in an integer array); "float" keeps fractional degrees (the VPT paper's labels).
- null_filter "env": a frame is dropped when its env action is null (no mapped key, no mouse button 0-2,
  no mouse motion: a hotbar change alone is null); "agent" drops frames whose AGENT action is null (joint
  buttons 0 and camera bin 60, as the VPT paper describes); "none" keeps every frame.
Actions labelled by VPT's inverse dynamics model (data.generation.idm_labelling) follow the same rules: its
camera output (a bin centre) is its estimate of the move in degrees, and "truncated" maps that estimate into
the original's labels as a recorded move of that size would be (the smallest bin, +-0.62 degrees, becomes 0);
"float" keeps the IDM's bins. One rule across a sampling keeps one label convention (step 2 checks it).
Both rules go into each episode's metadata (`conversion.camera_labels`, `conversion.null_filter`); step 2
refuses to mix episodes made with different rules.
"""

from __future__ import annotations

import numpy as np

from vpt_model.action_space import env_arrays_to_joint, is_null_joint

CAMERA_LABELS = ("truncated", "float")
NULL_FILTERS = ("env", "agent", "none")
DEFAULT_CAMERA_LABELS = "truncated"
DEFAULT_NULL_FILTER = "env"


def label_camera(env_camera: np.ndarray, camera_labels: str) -> np.ndarray:
    """Camera labels (N, 2) float32 degrees from recorded float64 degrees, by the chosen rule.

    Truncation runs on float64 (as the original's float64 -> int64 assignment), then the result is stored
    as float32: whole degrees are exact in float32.
    """
    if camera_labels == "truncated":
        return np.trunc(np.asarray(env_camera, dtype=np.float64)).astype(np.float32)
    if camera_labels == "float":
        return np.asarray(env_camera, dtype=np.float32)
    raise ValueError(f"camera_labels must be one of {CAMERA_LABELS}, got {camera_labels!r}")


def keep_mask(env_buttons: np.ndarray, camera_labels: np.ndarray, env_null: np.ndarray, null_filter: str) -> np.ndarray:
    """(N,) bool: frames kept under the null rule. `camera_labels` are the stored (labelled) camera values."""
    if null_filter == "env":
        return ~np.asarray(env_null, dtype=bool)
    if null_filter == "agent":
        joint_buttons, joint_camera = env_arrays_to_joint(env_buttons, camera_labels)
        return ~is_null_joint(joint_buttons, joint_camera)
    if null_filter == "none":
        return np.ones(len(env_buttons), dtype=bool)
    raise ValueError(f"null_filter must be one of {NULL_FILTERS}, got {null_filter!r}")
