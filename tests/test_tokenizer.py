"""MineCLIP's tokenizer: the ids Hugging Face's CLIP tokenizer gives, in MineCLIP's [SOT] + ids[:75] + [EOT], pad 0 layout."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from mineclip_model import tokenizer as tokenizer_module
from mineclip_model.tokenizer import (
    CLIP_VOCAB_INSTALL_HINT,
    EOT_TOKEN_ID,
    SOT_TOKEN_ID,
    ClipTokenizer,
    find_clip_bpe_vocab,
    tokenize,
)

# Ids from Hugging Face's CLIPTokenizer built from the same vocabulary file, called as MineCLIP calls it
# (the file names the versions): word-final capital sigma, dotted I, sharp s, ligatures, CJK and other
# scripts, emoji sequences, odd whitespace, control characters, special-token text, texts over 77 tokens.
REFERENCE = json.loads((Path(__file__).parent / "data" / "clip_token_ids.json").read_text(encoding="utf-8"))
CASES = [(case["text"], case["ids"]) for case in REFERENCE["cases"]]
PLAIN_PROMPTS = ["chop a tree", "Go explore!!", "dig down and find diamonds", "build a 3x3 dirt house, then sleep", ""]


def expected_row(ids: list[int]) -> list[int]:
    row = [SOT_TOKEN_ID] + ids[:75] + [EOT_TOKEN_ID]
    return row + [0] * (77 - len(row))


def test_ids_equal_hugging_faces_clip_tokenizer():
    tokenizer = ClipTokenizer()
    assert len(CASES) >= 50
    for text, ids in CASES:
        assert tokenizer.encode(text) == ids, repr(text)


def test_mineclip_layout_for_every_reference_text():
    tokens = tokenize([text for text, _ in CASES])
    assert tokens.shape == (len(CASES), 77) and tokens.dtype == torch.long
    lengths = [len(ids) for _, ids in CASES]
    assert 75 in lengths and max(lengths) > 75  # the boundary and truncation are exercised
    for row, (text, ids) in zip(tokens.tolist(), CASES):
        assert row == expected_row(ids), repr(text)


def test_word_final_capital_sigma_lowercases_to_sigma_not_final_sigma():
    ids = ClipTokenizer().encode("ΟΔΟΣ ΣΟΦΟΣ")
    assert ids.count(481) == 2 and 480 not in ids  # σ (481), where str.lower() would give ς (480)


def test_plain_prompts_match_openais_tokenizer():
    """A second, independent reference for ordinary prompts: clip-anytorch's simple_tokenizer.py (loaded by
    file path: importing `clip` would pull in torchvision)."""
    path = find_clip_bpe_vocab().parent / "simple_tokenizer.py"
    spec = importlib.util.spec_from_file_location("clip_simple_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    openai = module.SimpleTokenizer()
    for row, prompt in zip(tokenize(PLAIN_PROMPTS).tolist(), PLAIN_PROMPTS):
        assert row == expected_row(openai.encode(prompt)), prompt


def test_known_ids():
    assert tokenize("chop a tree")[0, :6].tolist() == [49406, 16663, 320, 2677, 49407, 0]
    assert tokenize("")[0, :3].tolist() == [49406, 49407, 0]


def test_bad_input_is_refused():
    with pytest.raises(TypeError):
        tokenize([])
    with pytest.raises(TypeError):
        tokenize([1, 2])


def test_missing_vocabulary_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=CLIP_VOCAB_INSTALL_HINT.replace(".", r"\.")):
        find_clip_bpe_vocab()


def test_vocabulary_checksum_is_verified(tmp_path):
    fake = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    fake.write_bytes(gzip.compress(b"#version: 0.2\na b\n"))
    with pytest.raises(ValueError, match="sha256"):
        ClipTokenizer(vocab_path=fake)


def test_default_tokenizer_is_built_once():
    assert tokenizer_module.default_tokenizer() is tokenizer_module.default_tokenizer()
