"""torch.load that never runs code from the file, reads checkpoints that carry foreign metadata objects,
and says in one line what a file is when it is not loadable weights."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

_UNSUPPORTED_GLOBAL = re.compile(r"GLOBAL ([\w.]+) ")
MAX_FOREIGN_CLASSES = 64
HEAD_BYTES = 4096  # how much of a file is read to tell what it is
PICKLE_SCAN_BYTES = 1 << 20  # a raw pickle's opcodes are scanned this far for the functions it would call


class UnreadableWeightsError(ValueError):
    """The file is not weights torch.load(weights_only=True) can read; the message names it and says what it is."""


class OpaqueObject:
    """Stands in for a class the checkpoint names but we do not need (training metadata): it runs nothing."""

    qualified_name = "an unknown class"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> "OpaqueObject":
        return type(self)(*args, **kwargs)


def _stand_in(qualified_name: str) -> type[OpaqueObject]:
    """An OpaqueObject subclass that remembers which name it replaced (for messages)."""
    return type("OpaqueObject", (OpaqueObject,), {"qualified_name": qualified_name})


def load_tensors_only(path: str | os.PathLike) -> Any:
    """torch.load(weights_only=True); names of unknown classes are mapped to inert OpaqueObject stand-ins.

    weights_only unpickling calls nothing but torch's tensor rebuilders and the classes allowed here, so a
    hostile file cannot execute code; the stand-ins make checkpoints that also pickle their training config
    (Lightning, OmegaConf, argparse Namespace ...) readable for their tensors. Raises FileNotFoundError, or
    UnreadableWeightsError with one line naming the file and what it is (empty, truncated, a web page ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    names: list[str] = []
    for _ in range(MAX_FOREIGN_CLASSES):
        stand_ins = [(_stand_in(name), name) for name in names]
        try:
            with torch.serialization.safe_globals(stand_ins), warnings.catch_warnings():
                # raw pickles of another protocol: the one-line description below says what the file is
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            match = _UNSUPPORTED_GLOBAL.search(str(err))
            if match is None or match.group(1) in names:
                raise UnreadableWeightsError(f"{path}: {describe_unloadable(path, err)}") from None
            names.append(match.group(1))
        except Exception as err:  # torch raises RuntimeError, EOFError, ValueError ... for files it cannot parse
            raise UnreadableWeightsError(f"{path}: {describe_unloadable(path, err)}") from None
    raise UnreadableWeightsError(f"{path}: names more than {MAX_FOREIGN_CLASSES} classes that are not tensors: not a weights file")


def describe_unloadable(path: str | os.PathLike, error: BaseException) -> str:
    """What a file that torch.load(weights_only=True) refused is, and what to do (no path, no newline)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    if size == 0:
        return "empty file (0 bytes): an interrupted download or copy; download it again"
    if head.startswith(b"PK\x03\x04"):
        return _describe_zip(path, size, error)
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array, not a weights file written by torch.save"
    if _is_safetensors(head, size):
        return "a .safetensors file; this loader reads files written by torch.save (such as the released .weights)"
    if head[:1] == b"\x80":
        calls = _pickle_globals(path)
        if any(not name.startswith(("torch.", "collections.")) for name in calls):
            return (f"a Python pickle that would call {', '.join(calls[:3])} when loaded (code execution); refused "
                    "without running anything. Use weights from a source you trust")
        return f"a Python pickle, not a weights file written by torch.save ({_torch_reason(error)})"
    text = head.lstrip().lower()
    if text.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself: fetch it with `git lfs pull` or download it again"
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page, not the file (the download link answered with a web page); download it again"
    if text.startswith(b"<?xml"):
        return "an XML document (a storage service's error answer?), not the file; download it again"
    if b"\x00" not in head:
        try:
            first_line = head.decode("utf-8").strip().splitlines()[0][:60]
            return f"a text file (it starts with {first_line!r}), not a weights file"
        except (UnicodeDecodeError, IndexError):
            pass
    return f"not a weights file torch can read ({_torch_reason(error)})"


def _describe_zip(path: Path, size: int, error: BaseException) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return f"a truncated or damaged PyTorch (zip) file ({size:,} bytes): the download or copy was cut short; download it again"
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in members):
        shown = ", ".join(members[:3]) + (", ..." if len(members) > 3 else "")
        return f"a zip archive, not a PyTorch file (it holds {shown or 'nothing'})"
    match = _UNSUPPORTED_GLOBAL.search(str(error))
    if match is not None:
        return (f"its pickle asks to call {match.group(1)} while loading (code execution); refused without running "
                "anything. Use weights from a source you trust")
    return f"a PyTorch file that cannot be read safely ({_torch_reason(error)})"


def _is_safetensors(head: bytes, size: int) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header."""
    return len(head) > 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size


def _pickle_globals(path: Path) -> list[str]:
    """Names of the functions and classes a raw pickle refers to, read from its opcodes without running it."""
    with open(path, "rb") as f:
        data = f.read(PICKLE_SCAN_BYTES)
    names: list[str] = []
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif opcode.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a truncated or odd pickle: report what was seen up to there
        pass
    return list(dict.fromkeys(names))


def _torch_reason(error: BaseException) -> str:
    """torch's reason in a few words, without its advice to retry with weights_only=False (that runs the file)."""
    for line in str(error).splitlines():
        line = line.strip()
        if line and "weights_only" not in line and not line.startswith(("Please file an issue", "Check the documentation")):
            return line.split(". This is an internal")[0][:160]
    return type(error).__name__
