"""Offline CLIP BPE tokenizer with MineCLIP's layout: [49406] + BPE(text)[:75] + [49407], padded with 0 to 77.

The vocabulary is OpenAI CLIP's `bpe_simple_vocab_16e6.txt.gz`, read from the installed
`clip-anytorch` package (located, never imported: importing it pulls in torchvision).

Text cleaning follows what MineCLIP really ran: HuggingFace's CLIPTokenizerFast
("openai/clip-vit-base-patch16"), i.e. NFC normalisation, runs of whitespace -> one space,
lower case. OpenAI's own CLIP tokenizer additionally applies ftfy.fix_text and a double
html.unescape (it turns "&amp;" into "&" and curly quotes into straight ones); the two agree on
ordinary prompts, and `openai_cleaning=True` reproduces OpenAI's variant.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import html
import importlib.util
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import regex
import torch

CLIP_BPE_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_BPE_VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
CLIP_VOCAB_INSTALL_HINT = "pip install --no-deps clip-anytorch==2.6.0"
NUM_BYTES = 256
NUM_MERGES = 49152 - NUM_BYTES - 2  # CLIP uses the file's first 48,894 merges (lines 1..48894)
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
SOT_TOKEN_ID = 49406
EOT_TOKEN_ID = 49407
PAD_TOKEN_ID = 0  # MineCLIP pads with 0 (not EOT): the text model reads the feature at argmax(token id)
CONTEXT_LENGTH = 77
END_OF_WORD = "</w>"
# CLIP's pre-tokenisation: contractions, runs of letters, single digits, runs of other non-spaces
WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
SPECIAL_PATTERN = r"<\|startoftext\|>|<\|endoftext\|>"


def find_clip_bpe_vocab() -> Path:
    """Path of CLIP's BPE vocabulary inside the installed `clip` package (clip-anytorch), not importing it."""
    spec = importlib.util.find_spec("clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if spec is not None and not locations and spec.origin:
        locations = [os.path.dirname(spec.origin)]
    for location in locations:
        candidate = Path(location) / CLIP_BPE_VOCAB_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"CLIP's BPE vocabulary ({CLIP_BPE_VOCAB_FILE}) was not found: install it with `{CLIP_VOCAB_INSTALL_HINT}` "
        "(only its data file is used; --no-deps skips torchvision)"
    )


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible map from each byte to a printable unicode character (printable bytes first)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(NUM_BYTES):
        if b not in mapping:
            # bytes that would be whitespace/control characters get code points from 256 up
            mapping[b] = chr(NUM_BYTES + extra)
            extra += 1
    return mapping  # insertion order (printable bytes first) is the order of the vocabulary's first 256 ids


class ClipTokenizer:
    """CLIP byte-level BPE; `tokenize` gives MineCLIP's [B, 77] int64 layout."""

    def __init__(self, vocab_path: str | os.PathLike | None = None, openai_cleaning: bool = False):
        path = Path(vocab_path) if vocab_path is not None else find_clip_bpe_vocab()
        raw = path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != CLIP_BPE_VOCAB_SHA256:
            raise ValueError(
                f"{path}: sha256 {digest} is not CLIP's bpe_simple_vocab_16e6 ({CLIP_BPE_VOCAB_SHA256}); "
                f"reinstall it with `{CLIP_VOCAB_INSTALL_HINT}`"
            )
        lines = gzip.decompress(raw).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]  # line 0 is a header
        self.byte_encoder = bytes_to_unicode()
        symbols = list(self.byte_encoder.values())
        vocab = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges] + [START_OF_TEXT, END_OF_TEXT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.bpe_ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.openai_cleaning = openai_cleaning
        self._word_re = regex.compile(WORD_PATTERN)
        self._special_re = regex.compile(f"({SPECIAL_PATTERN})")
        self._openai_re = regex.compile(f"{SPECIAL_PATTERN}|{WORD_PATTERN}", regex.IGNORECASE)
        self._cache: dict[str, list[int]] = {}
        if self.encoder[START_OF_TEXT] != SOT_TOKEN_ID or self.encoder[END_OF_TEXT] != EOT_TOKEN_ID:
            raise ValueError(f"{path}: unexpected vocabulary layout (special token ids)")

    def _bpe(self, word: str) -> list[int]:
        """Token ids of one pre-token (already mapped to byte characters)."""
        if word in self._cache:
            return self._cache[word]
        parts = list(word[:-1]) + [word[-1] + END_OF_WORD]
        while len(parts) > 1:
            pairs = {(a, b) for a, b in zip(parts, parts[1:])}
            best = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if best not in self.bpe_ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.encoder[p] for p in parts]
        self._cache[word] = ids
        return ids

    def _encode_words(self, words: Sequence[str]) -> list[int]:
        ids: list[int] = []
        for word in words:
            if word in (START_OF_TEXT, END_OF_TEXT):
                ids.append(self.encoder[word])
            else:
                ids.extend(self._bpe("".join(self.byte_encoder[b] for b in word.encode("utf-8"))))
        return ids

    def encode(self, text: str) -> list[int]:
        """BPE token ids of `text`, without start/end tokens."""
        if self.openai_cleaning:
            import ftfy  # only this variant needs it

            text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
            text = regex.sub(r"\s+", " ", text).strip().lower()
            return self._encode_words(self._openai_re.findall(text))
        words: list[str] = []
        # like HuggingFace's fast tokenizer: special-token strings are matched on the raw text first
        for segment in self._special_re.split(text):
            if segment in (START_OF_TEXT, END_OF_TEXT):
                words.append(segment)
            elif segment:
                segment = regex.sub(r"\s+", " ", unicodedata.normalize("NFC", segment)).lower()
                words.extend(self._word_re.findall(segment))
        return self._encode_words(words)

    def tokenize(self, texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
        """Texts -> int64 [B, context_length]: SOT, the first context_length - 2 BPE tokens, EOT, then 0s."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0 or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a string or a non-empty sequence of strings")
        tokens = torch.full((len(texts), context_length), PAD_TOKEN_ID, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [SOT_TOKEN_ID] + self.encode(text)[: context_length - 2] + [EOT_TOKEN_ID]
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return tokens

    __call__ = tokenize


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> ClipTokenizer:
    """The MineCLIP tokenizer over the installed vocabulary, built once (reading it takes ~0.3 s)."""
    return ClipTokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """MineCLIP token ids [B, 77] of one text or a list of texts."""
    return default_tokenizer().tokenize(texts, context_length)
