"""Command-line settings: one convention for every entrypoint of the toolkit.

A refused setting is ONE line on stderr, `<program>: <setting> <value>: <problem>; <fix>`, exit status 2,
no traceback, and nothing written. Checks run before any work starts:

    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--T", type=cli.int_range(1), default=320, help="frames per sample")
    args = parser.parse_args(argv)          # type and choice errors: one line, exit 2
    if args.T % args.trunc_t:               # checks that involve several settings
        parser.refuse("--T", args.T, f"is not a multiple of --trunc_t {args.trunc_t}", "use e.g. --T 320 --trunc_t 64")

`parser.refuse` (or `cli.refuse(program, ...)` where no parser is at hand) raises `SettingError`; argparse's
`error()` and `SettingError` both end the program through `exit_with_refusal`, so the format is the same
everywhere. Abbreviated options are refused (`allow_abbrev=False`): `--learning_rat` is not `--learning_rate`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

EXIT_BAD_SETTING = 2  # argparse's own status for usage errors; scripts and tests rely on it


class SettingError(Exception):
    """A setting that cannot work. `str(e)` is the one line the user sees (without the program name)."""


def _line(setting: str, value: Any, problem: str, fix: str | None) -> str:
    shown = f"{setting} {value!s}" if value is not None else setting
    return f"{shown}: {problem}" + (f"; {fix}" if fix else "")


def refuse(setting: str, value: Any, problem: str, fix: str | None = None) -> NoReturn:
    """Raise SettingError for `setting` (e.g. '--T', 'FREEZE') with its `value`, what is wrong and the fix."""
    raise SettingError(_line(setting, value, problem, fix))


def exit_with_refusal(program: str, message: str) -> NoReturn:
    """Print `<program>: <message>` as one line on stderr and exit with status 2."""
    one_line = " ".join(str(message).split())
    print(f"{program}: {one_line}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_BAD_SETTING)


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the module docstring's layout (its examples' line breaks) and appends '(default: X)' to every option
    that has one. An empty default ('', []) shows nothing: '(default: [])' says less than the help text itself."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # `is`, not `in`: a default of 0 equals False and must still be shown
        if "%(default)" in text or action.default is None or action.default is False or not action.option_strings \
                or action.default == argparse.SUPPRESS or _is_empty(action.default):
            return text
        return f"{text} (default: %(default)s)"


def _is_empty(value: Any) -> bool:
    return isinstance(value, (str, list, tuple, dict, set)) and len(value) == 0


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the toolkit's conventions: no abbreviations, defaults in --help, one-line refusals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # argparse calls this for unknown, missing or mistyped arguments
        exit_with_refusal(self.prog, f"{message} (see --help)")

    def refuse(self, setting: str, value: Any, problem: str, fix: str | None = None) -> NoReturn:
        """Refuse a setting after parsing (checks that involve files or several settings)."""
        exit_with_refusal(self.prog, _line(setting, value, problem, fix))

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        try:
            return super().parse_args(args, namespace)
        except SettingError as e:  # raised by a type= function that needs more than ArgumentTypeError
            exit_with_refusal(self.prog, str(e))


def run_main(program: str, main: Callable[[], int]) -> int:
    """Run `main()`, turning a SettingError raised anywhere during the checks into the one-line refusal."""
    try:
        return main()
    except SettingError as e:
        exit_with_refusal(program, str(e))


def renamed_option(parser: argparse.ArgumentParser, old: str, new: str, note: str | None = None) -> None:
    """Make `old` (an option that was renamed) a refusal that names `new`; it is hidden from --help.

    Given with or without a value, `old` ends the program with the one-line refusal, before any work.
    """

    class Renamed(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: str | None = None) -> None:
            problem = f"was renamed to {new}" + (f" ({note})" if note else "")
            exit_with_refusal(parser.prog, _line(old, values, problem, f"use {new}"))

    parser.add_argument(old, nargs="?", action=Renamed, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def refuse_renamed_variables(program: str, renamed: dict[str, tuple[str, str]], environ: dict[str, str] | None = None) -> None:
    """Refuse (one line, exit 2) when an old variable name is set in the environment.

    `renamed` maps old name -> (new name, what the new one means). A script's variable that was renamed
    would otherwise be ignored silently while the user believes it is in effect.
    """
    environ = os.environ if environ is None else environ
    for old, (new, meaning) in renamed.items():
        if old in environ:
            exit_with_refusal(program, _line(f"{old}={environ[old]}", None, f"this setting is now {new} ({meaning})",
                                             f"unset {old} and set {new} instead"))


# ---- `type=` functions: argparse shows their ArgumentTypeError as "argument --x: <message>" --------------

def _number(kind: type, text: str) -> Any:
    try:
        value = kind(str(text).replace("_", "")) if kind is int else kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def int_range(low: int | None = None, high: int | None = None, allow: Sequence[int] = ()) -> Callable[[str], int]:
    """A whole number in [low, high] (either bound optional; `allow` lists extra accepted values such as -1).

    Underscores are accepted as in the scripts' variables (10_000_000).
    """

    def parse(text: str) -> int:
        value = _number(int, text)
        if value in allow:
            return value
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: {_range_text(low, high, allow)}")
        return value

    parse.__name__ = "whole number"
    return parse


def float_range(low: float | None = None, high: float | None = None, low_open: bool = False,
                high_open: bool = False) -> Callable[[str], float]:
    """A finite number in the range; `low_open`/`high_open` exclude the bound itself (e.g. > 0)."""

    def parse(text: str) -> float:
        value = _number(float, text)
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
            raise argparse.ArgumentTypeError(f"{value:g} is out of range: must be {' and '.join(x for x in (lo, hi) if x)}")
        return value

    parse.__name__ = "number"
    return parse


def _range_text(low: int | None, high: int | None, allow: Sequence[int]) -> str:
    parts = []
    if low is not None and high is not None:
        parts.append(f"must be {low}..{high}")
    elif low is not None:
        parts.append(f"must be >= {low}")
    elif high is not None:
        parts.append(f"must be <= {high}")
    if allow:
        parts.append("or " + ", ".join(str(a) for a in allow))
    return " ".join(parts)


probability = float_range(0.0, 1.0)
positive_float = float_range(0.0, low_open=True)
non_negative_float = float_range(0.0)
positive_int = int_range(1)
non_negative_int = int_range(0)


def comma_list(choices: Sequence[str] | None = None) -> Callable[[str], list[str]]:
    """'a,b' -> ['a', 'b'] (empty string -> []); with `choices`, every item must be one of them."""

    def parse(text: str) -> list[str]:
        items = [x.strip() for x in str(text).split(",") if x.strip()]
        if choices is not None:
            unknown = [x for x in items if x not in choices]
            if unknown:
                raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, unknown))}: choose from {', '.join(choices)}")
        return items

    parse.__name__ = "comma-separated list"
    return parse


def existing_file(setting: str, value: str | os.PathLike, fix: str | None = None) -> Path:
    """`Path(value)` when it is a readable, non-empty file; otherwise SettingError naming `setting` and the fix."""
    path = Path(value)
    if path.is_dir():
        refuse(setting, value, "is a directory, not a file", fix)
    if not path.is_file():
        refuse(setting, value, "not found", fix)
    if not os.access(path, os.R_OK):
        refuse(setting, value, "is not readable (permissions)", fix)
    if path.stat().st_size == 0:
        refuse(setting, value, "is empty (0 bytes: an interrupted download or copy?)", fix)
    return path


def existing_dir(setting: str, value: str | os.PathLike, fix: str | None = None) -> Path:
    """`Path(value)` when it is a directory; otherwise SettingError naming `setting` and the fix."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        refuse(setting, value, "is a file, not a directory", fix)
    if not path.is_dir():
        refuse(setting, value, "not found", fix)
    return path
