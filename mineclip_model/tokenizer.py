"""MineCLIP's text tokenization, offline: [49406] + BPE(text)[:75] + [49407], padded with 0 to 77.

MineCLIP (mineclip/mineclip/tokenization.py) tokenizes with Hugging Face's fast CLIP tokenizer
(`AutoTokenizer.from_pretrained("openai/clip-vit-base-patch16")`, `add_special_tokens=False`), then adds
the start and end tokens itself, keeps at most 75 BPE tokens and pads with 0. The same tokenizer is
built here with the `tokenizers` library (the engine behind it) from OpenAI CLIP's BPE vocabulary
`bpe_simple_vocab_16e6.txt.gz`, read from the installed `clip-anytorch` package (located, never
imported: importing it pulls in torchvision), with no hub access: NFC normalisation, runs of whitespace
to one space, per-character lower case (so a word-final capital sigma becomes σ, not ς), CLIP's
pre-tokenisation pattern, byte-level BPE with `</w>` word ends. The strings `<|startoftext|>` and
`<|endoftext|>` written in a prompt map to their ids, as in Hugging Face's CLIPTokenizer built from this
vocabulary. OpenAI's own CLIP tokenizer differs (ftfy, html unescaping, str.lower()); MineCLIP did not
use it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE

CLIP_BPE_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_BPE_VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
CLIP_VOCAB_INSTALL_HINT = ".venv/bin/pip install --no-deps clip-anytorch==2.6.0"
NUM_MERGES = 49152 - 256 - 2  # CLIP uses the file's first 48,894 merges (lines 1..48894)
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
SOT_TOKEN_ID = 49406
EOT_TOKEN_ID = 49407
PAD_TOKEN_ID = 0  # MineCLIP pads with 0 (not EOT): the text model reads the feature at argmax(token id)
CONTEXT_LENGTH = 77
END_OF_WORD = "</w>"
# CLIP's pre-tokenisation: special tokens, contractions, runs of letters, single digits, runs of other non-spaces
PRE_TOKENIZER_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


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


def build_clip_tokenizer(vocab_path: str | os.PathLike) -> Tokenizer:
    """Hugging Face's CLIP tokenizer from `bpe_simple_vocab_16e6.txt.gz` (checked by sha256); no special tokens added.

    Vocabulary layout (49,408 ids): the 256 byte symbols, the same with `</w>`, one id per merge, then
    `<|startoftext|>` (49406) and `<|endoftext|>` (49407). Raises ValueError for another file.
    """
    path = Path(vocab_path)
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CLIP_BPE_VOCAB_SHA256:
        raise ValueError(
            f"{path}: sha256 {digest} is not CLIP's bpe_simple_vocab_16e6 ({CLIP_BPE_VOCAB_SHA256}); "
            f"reinstall it with `{CLIP_VOCAB_INSTALL_HINT}`"
        )
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]  # line 0 is a header
    # The byte-level alphabet sorted by code point is the byte order CLIP's vocabulary uses: printable
    # bytes stand for themselves (< 256), the others map to 256, 257, ... in byte order.
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet(), key=ord)
    vocab = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges] + [START_OF_TEXT, END_OF_TEXT]
    tokenizer = Tokenizer(
        BPE(
            vocab={token: i for i, token in enumerate(vocab)},
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix=END_OF_WORD,
            unk_token=END_OF_TEXT,
            fuse_unk=False,
            dropout=None,
        )
    )
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRE_TOKENIZER_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in (START_OF_TEXT, END_OF_TEXT)]
    )
    if tokenizer.token_to_id(START_OF_TEXT) != SOT_TOKEN_ID or tokenizer.token_to_id(END_OF_TEXT) != EOT_TOKEN_ID:
        raise ValueError(f"{path}: unexpected vocabulary layout (special token ids)")
    return tokenizer


class ClipTokenizer:
    """MineCLIP's tokenization; `tokenize` gives its [B, 77] int64 layout."""

    def __init__(self, vocab_path: str | os.PathLike | None = None):
        self.tokenizer = build_clip_tokenizer(vocab_path if vocab_path is not None else find_clip_bpe_vocab())

    def encode(self, text: str) -> list[int]:
        """BPE token ids of `text`, without start/end tokens (MineCLIP's add_special_tokens=False)."""
        # One text at a time: encode_batch would start the library's thread pool, which then warns in
        # forked data-loader workers.
        return self.tokenizer.encode(text, add_special_tokens=False).ids

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
    """The MineCLIP tokenizer over the installed vocabulary, built once."""
    return ClipTokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """MineCLIP token ids [B, 77] of one text or a list of texts."""
    return default_tokenizer().tokenize(texts, context_length)
