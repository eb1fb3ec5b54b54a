"""The guide's shell scripts and small CLIs: syntax, flags that exist, the demo end to end, clear refusals."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "1_generate_dataset.sh": ["data/generation/generate_dataset.py"],
    "2_create_sampling.sh": ["data/sampling/generate_sampling.py"],
    "3_train_finetune_template.sh": ["training/train.py"],
    "3_train.sh": ["3_train_finetune_template.sh"],
    "4_train_prior.sh": ["prior_model/train_prior.py"],
    "2_gen_vid_for_text_prompt.sh": ["run_agent.py"],
    "download_weights.sh": ["data/weights_download.py"],
}


def _help(entrypoint: str) -> str:
    result = subprocess.run([sys.executable, entrypoint, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _invocation(text: str, entrypoint: str) -> str:
    """The command line that calls `entrypoint`, with its backslash-continued lines."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if entrypoint in line)
    end = start
    while lines[end].rstrip().endswith("\\"):
        end += 1
    return "\n".join(lines[start : end + 1]).split(entrypoint, 1)[1]


@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_is_valid_bash_and_passes_only_existing_flags(script):
    assert subprocess.run(["bash", "-n", script], cwd=REPO_ROOT).returncode == 0
    text = (REPO_ROOT / script).read_text()
    for entrypoint in SCRIPTS[script]:
        call = _invocation(text, entrypoint)
        flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z_]+)", call)) - {"--num_processes", "--mixed_precision"}
        if entrypoint.endswith(".sh"):  # a script that sets another script's variables and runs it
            template = (REPO_ROOT / entrypoint).read_text()
            names = re.findall(r"^export ([A-Z_][A-Z0-9_]*)=", text, re.M)
            assert names and all(re.search(rf"^{n}=\$\{{{n}", template, re.M) for n in names), script
            continue
        known = set(re.findall(r"--[a-z][a-z_]+", _help(entrypoint)))
        assert flags and flags <= known, f"{script} passes {sorted(flags - known)} that {entrypoint} does not accept"


def test_every_script_variable_can_come_from_the_environment():
    for script in SCRIPTS:
        for line in (REPO_ROOT / script).read_text().splitlines():
            match = re.match(r"^(?:export )?([A-Z_][A-Z0-9_]*)=(.*)$", line)
            if match and not match.group(2).startswith("("):  # bash arrays are built from the variables
                assert match.group(2).startswith("${" + match.group(1)), f"{script}: {line}"


def test_pyproject_installs_every_package_and_top_level_module():
    """`pip install -e .` (setup_env.sh) must make every package and top-level module importable from anywhere."""
    tomllib = pytest.importorskip("tomllib")
    from setuptools import find_packages

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    installed = set(find_packages(where=str(REPO_ROOT), **config["packages"]["find"]))
    # every folder with an __init__.py (find_packages only walks into such folders: data/dataset_* costs nothing)
    packages = set(find_packages(where=str(REPO_ROOT), exclude=["tests", "tests.*"]))
    assert "rollout" in packages and packages <= installed, sorted(packages - installed)
    modules = {path.stem for path in REPO_ROOT.glob("*.py")}  # run_agent, embed_conditioned_policy, ...
    assert {"run_agent", "embed_conditioned_policy", "MineRLConditionalAgent"} <= modules
    assert modules <= set(config["py-modules"]), sorted(modules - set(config["py-modules"]))


# A command a user would copy from a message, --help or a script comment, without the .venv/bin/ it needs
BARE_COMMAND = re.compile(r"(?<![\w/.\-])(python (-m \w|\S+\.py)|tensorboard --logdir|pip install|accelerate launch (-|\S+\.py))")


def test_printed_commands_run_as_printed_from_the_repo_root():
    """`tensorboard`, `python`, `pip`, `accelerate` are only on PATH in an activated venv: hints name .venv/bin/."""
    listed = subprocess.run(["git", "ls-files", "*.py", "*.sh"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    files = [f for f in listed.split() if not f.startswith("tests/") and f != "setup_env.sh"]  # setup_env builds .venv
    assert "training/train.py" in files and "rollout/prompts.py" in files
    bare = [f"{f}:{i}: {line.strip()}" for f in files
            for i, line in enumerate((REPO_ROOT / f).read_text().splitlines(), 1) if BARE_COMMAND.search(line)]
    assert not bare, "\n".join(bare)


def test_docstring_examples_keep_their_line_continuations():
    """A `\\` + newline in a plain (not r-prefixed) docstring joins the lines: --help would show one long line."""
    import ast

    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    continued = []
    for name in listed:
        source = (REPO_ROOT / name).read_text()
        tree = ast.parse(source)
        doc = ast.get_docstring(tree, clean=False)
        if doc is not None and "\\\n" in ast.get_source_segment(source, tree.body[0]):
            continued.append(name)
            assert "\\\n" in doc, f"{name}: make the docstring raw (r\"\"\"...) so its \\ line breaks stay"
    assert "run_agent.py" in continued and "data/generation/generate_dataset.py" in continued


@pytest.mark.parametrize("entrypoint,example", [
    ("run_agent.py", "my_task_best.weights \\\n        --labels pre-trained fine-tuned"),
    ("data/generation/generate_dataset.py", "--num_episodes 5 \\\n        --output_dir data/dataset_contractor"),
    ("training/train.py", "\n    .venv/bin/accelerate launch training/train.py --in_weights"),
])
@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
def test_help_shows_the_usage_examples_line_by_line(entrypoint, example):
    assert example in _help(entrypoint)


def test_run_agent_without_minerl_says_what_to_install():
    result = subprocess.run([sys.executable, "run_agent.py", "--custom_text_prompt", "chop a tree"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    try:
        import minerl  # noqa: F401
    except ImportError:
        assert result.returncode == 2
        assert "requirements-minerl.txt" in result.stderr and "JDK 8" in result.stderr and "xvfb" in result.stderr
    else:
        pytest.skip("MineRL is installed here")


def test_embed_cli_text_prior_and_video(tmp_path, monkeypatch):
    import dataclasses

    from data.video_io import VideoWriter
    from mineclip_model import embed_cli
    from mineclip_model.embedding import embed_clip, embed_text, resize_frames_for_mineclip
    from mineclip_model.mineclip import MineCLIP, MineCLIPConfig
    from prior_model.prior import GoalPrior, PriorConfig, save_prior

    torch.manual_seed(0)
    model = MineCLIP(dataclasses.replace(MineCLIPConfig.tiny(), embed_dim=512)).eval()
    monkeypatch.setattr(embed_cli, "load_mineclip", lambda path, device: model)
    (tmp_path / "attn.pth").write_bytes(b"x")  # load_mineclip is replaced; the file must only exist
    assert embed_cli.main(["--mineclip_weights", str(tmp_path / "attn.pth"), "--text", "chop a tree", "--output", str(tmp_path / "t.npy"), "--device", "cpu"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), embed_text(model, ["chop a tree"], device="cpu")[0], rtol=1e-5)
    save_prior(GoalPrior(PriorConfig()), tmp_path / "prior.pt")
    assert embed_cli.main(["--mineclip_weights", str(tmp_path / "attn.pth"), "--text", "chop a tree", "--prior_weights", str(tmp_path / "prior.pt"), "--deterministic_prior",
                           "--output", str(tmp_path / "g.npy"), "--device", "cpu"]) == 0
    goal = np.load(tmp_path / "g.npy")
    assert goal.shape == (512,) and not np.allclose(goal, np.load(tmp_path / "t.npy"))
    frames = np.random.default_rng(0).integers(0, 255, (40, 90, 160, 3), dtype=np.uint8)
    with VideoWriter(tmp_path / "clip.mp4") as writer:
        for frame in frames:
            writer.write(frame)
    assert embed_cli.main(["--mineclip_weights", str(tmp_path / "attn.pth"), "--video", str(tmp_path / "clip.mp4"), "--start_frame", "10", "--output", str(tmp_path / "v.npy"),
                           "--device", "cpu"]) == 0
    from data.video_io import VideoReader

    with VideoReader(tmp_path / "clip.mp4") as reader:
        expected = embed_clip(model, resize_frames_for_mineclip(reader.read_range(10, 26)), device="cpu")
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), expected, rtol=1e-5, atol=1e-6)


# (arguments, with {d} the folder of the test's files; the one line embed_cli must print)
EMBED_CLI_ROWS = {
    "missing attn.pth": (["--text", "x", "--mineclip_weights", "{d}/none.pth"],
                         "embed_cli: --mineclip_weights {d}/none.pth: not found; download it with bash download_weights.sh"),
    "attn.pth not weights": (["--text", "x", "--mineclip_weights", "{d}/garbage.pth"],
                             "embed_cli: --mineclip_weights {d}/garbage.pth: is not MineCLIP attn.pth weights ("),
    "missing prior": (["--text", "x", "--mineclip_weights", "{d}/garbage.pth", "--prior_weights", "{d}/none.pt"],
                      "embed_cli: --prior_weights {d}/none.pt: not found; download it with bash download_weights.sh"),
    "missing video": (["--video", "{d}/none.mp4", "--mineclip_weights", "{d}/garbage.pth"],
                      "embed_cli: --video {d}/none.mp4: not found"),
    "negative start": (["--video", "{d}/none.mp4", "--start_frame", "-1"],
                       "embed_cli: argument --start_frame: -1 is out of range: must be >= 0"),
    "abbreviation": (["--text", "x", "--out", "{d}/o.npy"], "embed_cli: the following arguments are required: --output"),
}


@pytest.mark.parametrize("row", EMBED_CLI_ROWS, ids=list(EMBED_CLI_ROWS))
def test_embed_cli_refuses_bad_input_in_one_line(tmp_path, row, capsys):
    """In this process, through the same cli.run_main as `python -m mineclip_model.embed_cli` (its __main__)."""
    from mineclip_model import embed_cli

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    args, message = EMBED_CLI_ROWS[row]
    args = [a.format(d=tmp_path) for a in args] + ([] if "--out" in args else ["--output", str(tmp_path / "o.npy")])
    with pytest.raises(SystemExit) as exit_info:
        embed_cli.cli.run_main(embed_cli.PROGRAM, lambda: embed_cli.main([*args, "--device", "cpu"]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.startswith(message.format(d=tmp_path)) and err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.pth"]  # no output written


def test_embed_cli_refuses_a_start_frame_past_the_video(tmp_path, monkeypatch, capsys):
    from data.video_io import VideoWriter
    from mineclip_model import embed_cli

    with VideoWriter(tmp_path / "clip.mp4") as writer:
        for frame in np.zeros((20, 64, 64, 3), np.uint8):
            writer.write(frame)
    (tmp_path / "attn.pth").write_bytes(b"x")
    monkeypatch.setattr(embed_cli, "load_mineclip", lambda path, device: None)
    with pytest.raises(SystemExit) as exit_info:
        cli_main = embed_cli.cli.run_main
        cli_main("embed_cli", lambda: embed_cli.main(["--video", str(tmp_path / "clip.mp4"), "--start_frame", "5",
                                                      "--mineclip_weights", str(tmp_path / "attn.pth"),
                                                      "--output", str(tmp_path / "x.npy"), "--device", "cpu"]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"embed_cli: --start_frame 5: {tmp_path}/clip.mp4 has 20 frames; frames 5..20 do not all "
                                       "exist; give a --start_frame of at most 4\n")
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.slow  # the whole pipeline, ~90 s: run_tests.sh --all and CI run it
def test_the_readme_example_runs_end_to_end(tmp_path):
    """The README's main command (examples/end_to_end.py), smaller: every step's real script, then evaluation."""
    result = subprocess.run([sys.executable, "examples/end_to_end.py", "--workdir", str(tmp_path / "run"), "--episodes", "4",
                             "--frames", "260", "--train_frames", "2400"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for step in ("1_generate_dataset.sh done", "2_create_sampling.sh done", "3_train_finetune_template.sh done"):
        assert step in out
    rows = {line.split()[0].rsplit("/", 1)[-1]: float(line.split()[1]) for line in out.splitlines()
            if line.startswith(str(tmp_path)) and line.split()[0].endswith(".weights")}
    assert rows["demo_best.weights"] < rows["tiny_init.weights"]  # NLL per frame fell
    assert "LEARNED: the fine-tuned weights beat their starting point and the best constant guess" in out
    assert (tmp_path / "run" / "training_curves.png").stat().st_size > 1000
    assert list((tmp_path / "run" / "dataset_contractor").iterdir())


STEP1_PARSERS = {  # module -> what --help must say about an option
    "data.generation.generate_dataset": {"--custom_input_dir": "without it the IDM labels the video"},
    "data.generation.convert_custom_data": {"--input_dir": "without it the IDM labels the video"},
    "data.generation.convert_from_contractor": {},
}


@pytest.mark.parametrize("module", list(STEP1_PARSERS))
def test_step1_help_shows_one_default_per_option_and_that_actions_are_optional(module):
    import argparse
    import importlib

    parser = importlib.import_module(module).build_parser()
    formatter = parser._get_formatter()
    helps = {action.option_strings[0]: " ".join(formatter._expand_help(action).split()) for action in parser._actions
             if action.option_strings and action.help not in (None, argparse.SUPPRESS)}
    assert {option: text for option, text in helps.items() if text.count("(default:") > 1} == {}
    assert "(default: " in helps["--jobs"] and "one per core" in helps["--jobs"]
    for option, words in STEP1_PARSERS[module].items():
        assert words in helps[option] and "+ actions.jsonl" not in helps[option]
