"""MineCLIP's offline CLIP tokenizer against an independent implementation (OpenAI's simple_tokenizer)."""

from __future__ import annotations

import gzip
import importlib.util

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

PROMPTS = [
    "chop a tree",
    "Go explore!!",
    "dig down and find diamonds",
    "don't dig straight down",
    "build a 3x3 dirt house, then sleep",
    "naïve café  under\tthe\nsea",
    "日本語のテキスト",
    "",
]
# Strings where OpenAI's cleaning (ftfy + html.unescape) and MineCLIP's (HuggingFace
# CLIPTokenizerFast: NFC, whitespace, lower case) disagree.
TRICKY = ["don’t “quote”", "fish &amp; chips", "ﬁnd the ﬂower", "ＡＢＣ１２３"]
# Ids from HuggingFace CLIPTokenizerFast, which MineCLIP's tokenization.py calls, built offline
# from the same vocabulary (transformers 5.24 / tokenizers 0.23, add_special_tokens=False).
HF_FAST_IDS = {
    "don’t “quote”": [847, 728, 503, 339, 728, 506, 4020, 728, 507],
    "fish &amp; chips": [2759, 261, 6259, 282, 8855],
    "ﬁnd the ﬂower": [171, 105, 223, 1764, 518, 171, 105, 224, 2032, 528],
}


@pytest.fixture(scope="module")
def openai_tokenizer():
    """clip-anytorch's simple_tokenizer.py loaded by file path (importing `clip` would pull in torchvision)."""
    path = find_clip_bpe_vocab().parent / "simple_tokenizer.py"
    spec = importlib.util.spec_from_file_location("clip_simple_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer()


def expected_row(ids: list[int]) -> list[int]:
    row = [SOT_TOKEN_ID] + ids[:75] + [EOT_TOKEN_ID]
    return row + [0] * (77 - len(row))


def test_fixed_prompts_match_openai_tokenizer(openai_tokenizer):
    tokens = tokenize(PROMPTS)
    assert tokens.shape == (len(PROMPTS), 77) and tokens.dtype == torch.long
    for row, prompt in zip(tokens.tolist(), PROMPTS):
        assert row == expected_row(openai_tokenizer.encode(prompt)), prompt


def test_known_ids():
    assert tokenize("chop a tree")[0, :6].tolist() == [49406, 16663, 320, 2677, 49407, 0]
    assert tokenize("")[0, :3].tolist() == [49406, 49407, 0]


def test_openai_cleaning_variant_matches_openai_tokenizer(openai_tokenizer):
    variant = ClipTokenizer(openai_cleaning=True)
    for text in PROMPTS + TRICKY:
        assert variant.encode(text) == openai_tokenizer.encode(text), text


def test_default_cleaning_follows_mineclip_not_openai(openai_tokenizer):
    default = ClipTokenizer()
    for text, ids in HF_FAST_IDS.items():
        assert default.encode(text) == ids, text
        assert openai_tokenizer.encode(text) != ids, text


def test_long_text_is_truncated_to_77_with_eot_last(openai_tokenizer):
    text = " ".join(["diamond"] * 30 + ["pickaxe"] * 30)
    row = tokenize(text)[0]
    assert row.shape == (77,)
    assert row[0] == SOT_TOKEN_ID and row[-1] == EOT_TOKEN_ID and (row != 0).all()
    assert row[1:76].tolist() == openai_tokenizer.encode(text)[:75]


def test_padding_is_zero_after_eot(openai_tokenizer):
    row = tokenize(["mine", "go to the nether and find a fortress"])[0].tolist()
    assert row[:3] == [SOT_TOKEN_ID, *openai_tokenizer.encode("mine"), EOT_TOKEN_ID]
    assert row[3:] == [0] * 74


def test_special_token_strings_map_to_their_ids():
    assert ClipTokenizer().encode("<|endoftext|>") == [EOT_TOKEN_ID]


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
