"""3_train_finetune_template.sh and 3_train.sh: what they pass, and the template run as a user runs it on a CPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from embed_conditioned_policy import SteveAgentPolicy
from training import train
from training.device import NO_GPU_NOTE
from training_helpers import REPO_ROOT, sampling, tree_state  # noqa: F401 - sampling is a fixture
from vpt_model.config import preset
from vpt_model.model_files import save_policy_weights

TEMPLATE = (REPO_ROOT / "3_train_finetune_template.sh").read_text()


def _train_help(capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_the_template_passes_only_settings_train_py_has_and_help_shows_defaults(capsys):
    help_text = _train_help(capsys)
    block = TEMPLATE.split("TRAIN_ARGS=(", 1)[1].split("\n)\n", 1)[0]
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z_]+)", block))
    assert len(flags) >= 30 and flags <= set(re.findall(r"--[a-z][a-z_]+", help_text))
    assert "(default: 320)" in help_text and "(default: 1e-05)" in help_text  # --T, --learning_rate
    variables = re.findall(r"^([A-Z_][A-Z0-9_]*)=\$\{", TEMPLATE, re.M)
    after_definition = {v: TEMPLATE.split(f"\n{v}=", 1)[1].split("\n", 1)[1] for v in variables}
    unused = [v for v, rest in after_definition.items() if f"${v}" not in rest and f"${{{v}" not in rest]
    assert variables and not unused
    # accelerate is given every value it would otherwise warn about
    launch = TEMPLATE.split('"$ACCELERATE" launch', 1)[1]
    assert all(flag in launch for flag in ("--num_processes", "--num_machines", "--mixed_precision", "--dynamo_backend"))


def test_3_train_keeps_the_papers_cadence_in_frames():
    """The original validated every 1000 windows of 12 x 64 frames: 768,000 frames (SPEC.md section 7)."""
    values = dict(re.findall(r"^export ([A-Z_]+)=\$\{[A-Z_]+:-([^}]+)\}", (REPO_ROOT / "3_train.sh").read_text(), re.M))
    frames_per_step = int(values["TRUNC_T"]) * int(values["BATCH_SIZE"]) * int(values["GRADIENT_ACCUM_STEPS"])
    window = 12 * 64
    assert int(values["VAL_FREQ"]) * frames_per_step == 1000 * window
    assert int(values["VAL_FREQ_BEGIN"]) * frames_per_step == 100 * window
    assert int(values["VAL_FREQ_SWITCH_STEPS"]) * frames_per_step == 500 * window
    assert int(values["SAVE_FREQ"]) * frames_per_step == 1000 * window
    assert int(values["LOG_FREQ"]) * frames_per_step == 100 * window
    assert int(values["VAL_EVERY_NTH"]) == 10


@pytest.mark.slow
def test_the_template_on_a_cpu_then_again_when_finished(sampling, tmp_path):
    torch.manual_seed(0)
    save_policy_weights(SteveAgentPolicy(preset("tiny")), tmp_path / "init.weights")
    env = {**os.environ, "PYTHON": sys.executable, "ACCELERATE": str(Path(sys.executable).with_name("accelerate")),
           "SAMPLING_NAME": "toy", "SAMPLING_DIR": str(sampling), "IN_MODEL": "tiny", "IN_WEIGHTS": str(tmp_path / "init.weights"),
           "OUT_WEIGHTS": str(tmp_path / "w" / "toy.weights"), "CHECKPOINT_DIR": str(tmp_path / "ckpt"),
           "LOG_DIR": str(tmp_path / "logs"), "T": "32", "TRUNC_T": "8", "BATCH_SIZE": "2", "GRADIENT_ACCUM_STEPS": "2",
           "TOTAL_FRAMES": "96", "WARMUP_FRAMES": "32", "LEARNING_RATE": "3e-3", "NUM_WORKERS": "0", "VAL_EVERY_NTH": "3",
           "SAVE_FREQ": "2", "LOG_FREQ": "1"}
    first = subprocess.run(["bash", "3_train_finetune_template.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-3000:]
    assert NO_GPU_NOTE in first.stdout  # the defaults (auto) on a CPU: fp32 eager, said once
    assert "were not passed to `accelerate launch`" not in output and "Traceback" not in output
    assert "Done: step 3, 96 frames" in first.stdout
    before = tree_state(tmp_path)
    again = subprocess.run(["bash", "3_train_finetune_template.sh"], cwd=REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith("This run is finished: step 3 (96 frames)") and again.stderr == ""
    assert tree_state(tmp_path) == before
