"""Weight files that are not what they should be: one line naming the file and what it is; wrapper prefixes.

Every loader of weights (policy .weights, the prior, MineCLIP's attn.pth) gets the same hostile files. Each
must fail with a ValueError of one line that starts with the path and says what the file is, never runs
code from it, never suggests weights_only=False (that would run the code), and leaves the file as it was.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from embed_conditioned_policy import SteveAgentPolicy
from mineclip_model.mineclip import MineCLIP, MineCLIPConfig, load_mineclip, original_state_dict
from prior_model.prior import GoalPrior, PriorConfig, load_prior
from toolkit_utils.state_dicts import StateDictMismatchError
from vpt_model.config import preset
from vpt_model.model_files import load_policy_weights, save_policy_weights

TINY_PRIOR = PriorConfig(embed_dim=8, hidden_dim=16, latent_dim=4)
MARKER = "ran.txt"  # what the code-running payloads would create


class RunsShell:
    """torch refuses the module (os) outright."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class RunsExec:
    """A builtin that runs code (not in a blocked module, unlike os.system)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    return buffer.getvalue()


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def _safetensors_bytes() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return len(header).to_bytes(8, "little") + header + b"\0\0\0\0"


GOOD = _torch_bytes({"w": torch.zeros(1000)})

# (case, file bytes given the marker path, what the message must say); the same for every loader
FILE_CASES = [
    ("empty", lambda m: b"", r"empty file \(0 bytes\): an interrupted download or copy; download it again"),
    ("truncated", lambda m: GOOD[: len(GOOD) // 2], r"a truncated or damaged PyTorch \(zip\) file \(\d[\d,]* bytes\)"),
    ("first bytes only", lambda m: GOOD[:10], r"a truncated or damaged PyTorch \(zip\) file \(10 bytes\)"),
    ("torch file running a shell", lambda m: _torch_bytes({"w": RunsShell(m)}),
     r"its pickle asks to call (posix|nt)\.system while loading \(code execution\); refused without running anything"),
    ("torch file running exec", lambda m: _torch_bytes({"w": RunsExec(m)}),
     r"its pickle asks to call (builtins\.)?exec while loading \(code execution\)"),
    ("pickle running a shell", lambda m: pickle.dumps({"w": RunsShell(m)}),
     r"a Python pickle that would call (posix|nt)\.system when loaded \(code execution\); refused without running"),
    ("pickle running exec", lambda m: pickle.dumps([RunsExec(m)]),
     r"a Python pickle that would call builtins\.exec when loaded \(code execution\)"),
    ("plain pickle", lambda m: pickle.dumps({"w": [1.0, 2.0]}), r"a Python pickle, not a weights file written by torch\.save"),
    ("zip that is not torch", lambda m: _zip_bytes(), r"a zip archive, not a PyTorch file \(it holds notes/readme\.txt\)"),
    ("numpy array", lambda m: _npy_bytes(), r"a NumPy \.npy array, not a weights file written by torch\.save"),
    ("safetensors", lambda m: _safetensors_bytes(), r"a \.safetensors file; this loader reads files written by torch\.save"),
    ("html page", lambda m: b"\n<!DOCTYPE html><html><body>Virus scan warning</body></html>",
     r"an HTML page, not the file \(the download link answered with a web page\); download it again"),
    ("xml error", lambda m: b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", r"an XML document"),
    ("git lfs pointer", lambda m: b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 952000000\n",
     r"a Git LFS pointer, not the file itself"),
    ("text", lambda m: b"these are not weights\nat all\n", r"a text file \(it starts with 'these are not weights'\)"),
]

# files torch reads, whose content is not what the loader needs: (case, object saved, policy/prior message, MineCLIP message)
CONTENT_CASES = [
    ("a list", [torch.zeros(2)], r"holds a list of 1 item, not a state dict", r"holds a list of 1 item, not a MineCLIP checkpoint"),
    ("a number", 5, r"holds an int, not a state dict", r"holds an int, not a MineCLIP checkpoint"),
    ("a training checkpoint", {"state_dict": {"w": torch.zeros(1)}, "epoch": 3},
     r"a dict whose entries are not all tensors: 'state_dict' \(a dict of 1 item\), 'epoch' \(an int\); "
     r"a training checkpoint\? its weights are under 'state_dict'", None),
    ("a foreign class", {"w": torch.zeros(1), "args": argparse.Namespace(lr=1.0)},
     r"a dict whose entries are not all tensors: 'args' \(argparse\.Namespace\(\.\.\.\), not run\)",
     r"holds a dict with keys 'w', 'args', not a MineCLIP checkpoint"),
]


def _policy_loader(path: Path) -> None:
    load_policy_weights(SteveAgentPolicy(preset("tiny")), path)


LOADERS = {
    "policy": _policy_loader,
    "prior": lambda path: load_prior(path),
    "mineclip": lambda path: load_mineclip(path, config=MineCLIPConfig.tiny()),
}


def _assert_one_line_refusal(load, path: Path, expected: str, tmp_path: Path) -> None:
    before = path.read_bytes()
    with pytest.raises(ValueError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    assert re.search(expected, message), message
    assert "weights_only" not in message
    assert not (tmp_path / MARKER).exists()  # no payload ran
    assert path.read_bytes() == before


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("case, content, expected", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_file_that_is_not_weights_is_named_in_one_line(tmp_path, loader, case, content, expected):
    path = tmp_path / "weights.file"
    path.write_bytes(content(tmp_path / MARKER))
    _assert_one_line_refusal(LOADERS[loader], path, expected, tmp_path)


CONTENT_PARAMS = [
    pytest.param(loader, obj, mineclip if loader == "mineclip" else expected, id=f"{case}-{loader}")
    for case, obj, expected, mineclip in CONTENT_CASES
    for loader in sorted(LOADERS)
    if not (loader == "mineclip" and mineclip is None)  # MineCLIP checks a 'state_dict' by its key names
]


@pytest.mark.parametrize("loader, obj, expected", CONTENT_PARAMS)
def test_readable_file_with_the_wrong_content_is_named_in_one_line(tmp_path, loader, obj, expected):
    path = tmp_path / "weights.file"
    torch.save(obj, path)
    _assert_one_line_refusal(LOADERS[loader], path, expected, tmp_path)


# ---------------------------------------------------------------------------------------------
# Wrapper prefixes: DDP (`module.`), the original's policy wrapper (`policy.`), torch.compile (`_orig_mod.`)


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module._orig_mod.", "_orig_mod.module.", "policy._orig_mod.",
                                    "_orig_mod.policy.", "module.policy._orig_mod.", "module.policy.", "policy.", "module."])
def test_policy_weights_with_wrapper_prefixes_load(tiny_policy, tmp_path, prefix):
    path = tmp_path / "wrapped.weights"
    torch.save({prefix + k: v for k, v in tiny_policy.state_dict().items()}, path)
    fresh = SteveAgentPolicy(preset("tiny"))
    load_policy_weights(fresh, path)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in tiny_policy.state_dict().items())


def test_compiled_submodule_keys_load(tiny_policy, tmp_path):
    """torch.compile on a part of the model puts `_orig_mod.` inside the key."""
    path = tmp_path / "part_compiled.weights"
    torch.save({k.replace("net.", "net._orig_mod.", 1): v for k, v in tiny_policy.state_dict().items()}, path)
    fresh = SteveAgentPolicy(preset("tiny"))
    load_policy_weights(fresh, path)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in tiny_policy.state_dict().items())


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module._orig_mod."])
def test_prior_weights_from_a_compiled_model_load(tmp_path, prefix):
    model = GoalPrior(TINY_PRIOR)
    path = tmp_path / "prior.pt"
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    loaded = load_prior(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_unknown_wrapper_prefix_is_named_in_one_line(tiny_policy, tmp_path):
    path = tmp_path / "agent.weights"
    torch.save({"agent." + k: v for k, v in tiny_policy.state_dict().items()}, path)
    with pytest.raises(StateDictMismatchError) as caught:
        load_policy_weights(SteveAgentPolicy(preset("tiny")), path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    assert f"each of its {len(tiny_policy.state_dict())} keys carries the prefix 'agent.'" in message


def test_good_files_still_load(tiny_policy, tmp_path):
    path = tmp_path / "good.weights"
    save_policy_weights(tiny_policy, path)
    load_policy_weights(SteveAgentPolicy(preset("tiny")), path)
    prior = tmp_path / "prior.pt"
    torch.save(GoalPrior(TINY_PRIOR).state_dict(), prior)
    assert load_prior(prior).config == TINY_PRIOR
    mineclip = tmp_path / "attn.pth"
    torch.save({"state_dict": original_state_dict(MineCLIP(MineCLIPConfig.tiny()))}, mineclip)
    load_mineclip(mineclip, config=MineCLIPConfig.tiny())
