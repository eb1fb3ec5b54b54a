"""On/off variables of the shell scripts (toolkit_utils/switches.sh), table-driven through the real scripts.

One rule everywhere: 1/true/yes turn the flag on; 0/false/no/empty (or unset) leave it off; anything else is
refused in one line naming the variable, exit status 2, before the step runs. The step's interpreter ($PYTHON, and
$ACCELERATE for the training template) is a stub that records its arguments, so each run takes milliseconds.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# script -> {variable: the flag it turns on}
SWITCHES = {
    "1_generate_dataset.sh": {"DEMO_RANDOM_MINECLIP": "--demo_random_mineclip"},
    "2_create_sampling.sh": {"OVERWRITE": "--overwrite", "ALLOW_DEMO_EMBEDDINGS": "--allow_demo_embeddings"},
    "2_gen_vid_for_text_prompt.sh": {"OVERLAY_PROMPT": "--overlay_prompt"},
    "2_test_finetuned_model.sh": {"OVERLAY_PROMPT": "--overlay_prompt"},
    "3_train_finetune_template.sh": {"AUGMENT": "--augment", "LOW_MEMORY": "--low_memory"},
    "3_train.sh": {"AUGMENT": "--augment", "LOW_MEMORY": "--low_memory"},  # sets the template's variables, runs it
    "4_train_prior.sh": {"TRUST_PICKLE": "--trust_pickle", "OVERWRITE": "--overwrite"},
    "download_weights.sh": {"WITH_PRIOR_DATASET": "--with_prior_dataset"},
}
ON = ["1", "true", "yes", "TRUE", "Yes"]
OFF = ["0", "false", "no", "", "FALSE", "No", None]  # None: the variable is not set at all
# value -> how it appears in the refusal (a newline would break the one line, so it is shown as a space)
REFUSED = {"2": "2", "ture": "ture", "on": "on", "-1": "-1", " 1": " 1", "1 ": "1 ", "y": "y", "1\n": "1 ", "0x1": "0x1"}
PROBLEM = "is not an on/off value; use 1, true or yes for on, 0, false, no or empty for off"

CASES = [(script, name, value) for script, names in SWITCHES.items() for name in names
         for value in [*ON, *OFF, *REFUSED]]


def _stub(path: Path, log: Path) -> Path:
    """An executable that appends its arguments (one per line, then a separator) to `log` and succeeds."""
    path.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >> "{log}"\necho "--end--" >> "{log}"\n')
    path.chmod(0o755)
    return path


def _run(script: str, changes: dict[str, str | None], tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    log = tmp_path / "calls.txt"
    env = {k: v for k, v in os.environ.items() if k not in {"SEED", *(n for names in SWITCHES.values() for n in names)}}
    env.update(PYTHON=str(_stub(tmp_path / "python", log)), ACCELERATE=str(_stub(tmp_path / "accelerate", log)))
    env.update({k: v for k, v in changes.items() if v is not None})
    result = subprocess.run(["bash", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    return result, log


@pytest.mark.parametrize("script,name,value", CASES, ids=[f"{s}-{n}={v!r}" for s, n, v in CASES])
def test_on_off_variable(script, name, value, tmp_path):
    result, log = _run(script, {name: value}, tmp_path)
    if value in REFUSED:
        # the template is what refuses for 3_train.sh (it execs the template with the variables set)
        program = "3_train_finetune_template.sh" if script == "3_train.sh" else script
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr == f"{program}: {name}={REFUSED[value]}: {PROBLEM}\n"
        assert not log.exists()  # refused before the step ran
        return
    assert result.returncode == 0, result.stderr
    calls = log.read_text().split("--end--\n")[:-1]
    assert calls, "the step was not run"
    flag = SWITCHES[script][name]
    for call in calls:  # the template calls train.py twice: the check, then accelerate launch
        assert (flag in call.splitlines()) == (value in ON), (value, call)


def test_every_value_less_flag_of_every_script_is_a_checked_switch():
    """A `${X:+--flag}` without a value must go through `switches X` and be in the table above."""
    found = {}
    for path in sorted(REPO_ROOT.glob("*.sh")):
        text = path.read_text()
        for name, flag in re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\+(--[a-z_]+)\}", text):
            assert re.search(rf"^switches\b.*\b{name}\b", text, re.M), f"{path.name}: {name} is not checked by switches"
            found.setdefault(path.name, {})[name] = flag
    assert found == {k: v for k, v in SWITCHES.items() if k != "3_train.sh"}


def _stub_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A .venv whose python is a stub: setup_env.sh then runs in milliseconds and installs nothing."""
    venv, log = tmp_path / "venv", tmp_path / "venv_calls.txt"
    (venv / "bin").mkdir(parents=True)
    _stub(venv / "bin" / "python", log)
    return venv, log


SETUP_ROWS = {  # FORCE_SETUP value -> reinstalls?
    **{v: True for v in ON},
    **{v: False for v in OFF},
}


@pytest.mark.parametrize("value", list(SETUP_ROWS) + list(REFUSED), ids=repr)
def test_setup_env_force_setup(value, tmp_path):
    venv, log = _stub_venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "BASE_PYTHON", "FORCE_SETUP")}
    env["VENV"] = str(venv)
    first = subprocess.run(["bash", "setup_env.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "[setup] ready" in first.stdout, first.stderr
    stamp = (venv / ".toolkit-setup-stamp").read_bytes()
    log.unlink()
    if value is not None:
        env["FORCE_SETUP"] = value
    again = subprocess.run(["bash", "setup_env.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    if value in REFUSED:
        assert again.returncode == 2 and again.stdout == ""
        assert again.stderr == f"setup_env.sh: FORCE_SETUP={REFUSED[value]}: {PROBLEM}\n"
        assert not log.exists()
    elif SETUP_ROWS[value]:
        assert again.returncode == 0 and "[setup] ready" in again.stdout, again.stderr
        assert "-m\npip\ninstall" in log.read_text()
    else:
        assert again.returncode == 0 and "is up to date" in again.stdout, again.stderr
        assert "pip" not in log.read_text()
    assert (venv / ".toolkit-setup-stamp").read_bytes() == stamp
