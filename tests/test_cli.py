"""The one convention for refused settings (toolkit_utils/cli.py): one line, exit status 2, no traceback."""

from __future__ import annotations

import pytest

from toolkit_utils import cli


def make_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog="prog")
    p.add_argument("--learning_rate", type=cli.positive_float, default=1e-5, help="peak LR")
    p.add_argument("--T", type=cli.int_range(1), default=320, help="frames")
    p.add_argument("--p_uncond", type=cli.probability, default=0.1, help="p")
    p.add_argument("--n_episodes", type=cli.int_range(1, allow=(-1,)), default=5, help="n")
    p.add_argument("--freeze", type=cli.comma_list(["cnn", "transformer"]), default=[], help="parts")
    p.add_argument("--mode", choices=["a", "b"], default="a", help="mode")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="seed")
    return p


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--learning_rate", "-0.003"], "prog: argument --learning_rate: -0.003 is out of range: must be > 0 (see --help)"),
        (["--learning_rate", "nan"], "prog: argument --learning_rate: 'nan' is not a finite number (see --help)"),
        (["--T", "0"], "prog: argument --T: 0 is out of range: must be >= 1 (see --help)"),
        (["--T", "3.5"], "prog: argument --T: '3.5' is not a whole number (see --help)"),
        (["--p_uncond", "1.5"], "prog: argument --p_uncond: 1.5 is out of range: must be >= 0 and <= 1 (see --help)"),
        (["--n_episodes", "0"], "prog: argument --n_episodes: 0 is out of range: must be >= 1 or -1 (see --help)"),
        (["--freeze", "cnn,transfomer"], "prog: argument --freeze: unknown 'transfomer': choose from cnn, transformer (see --help)"),
        (["--learning_rat", "1e-4"], "prog: unrecognized arguments: --learning_rat 1e-4 (see --help)"),
        (["--mode", "c"], "prog: argument --mode: invalid choice: 'c' (choose from a, b) (see --help)"),
    ],
)
def test_bad_setting_is_one_line_with_status_2(argv, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        make_parser().parse_args(argv)
    assert exc.value.code == cli.EXIT_BAD_SETTING
    err = capsys.readouterr().err
    assert err.strip().replace("'c' (choose from 'a', 'b')", "'c' (choose from a, b)") == expected
    assert len(err.strip().splitlines()) == 1


def test_good_settings_parse_with_underscores_and_allowed_values():
    args = make_parser().parse_args(["--T", "1_000", "--n_episodes", "-1", "--freeze", "cnn, transformer", "--p_uncond", "1"])
    assert (args.T, args.n_episodes, args.freeze, args.p_uncond) == (1000, -1, ["cnn", "transformer"], 1.0)


def test_refuse_after_parsing_and_run_main(capsys, tmp_path):
    p = make_parser()
    with pytest.raises(SystemExit) as exc:
        p.refuse("--T", 100, "is not a multiple of --trunc_t 64", "use --T 128")
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == "prog: --T 100: is not a multiple of --trunc_t 64; use --T 128"

    empty = tmp_path / "x.weights"
    empty.write_bytes(b"")

    def main() -> int:
        cli.existing_file("--in_weights", empty, "download it again")
        return 0

    with pytest.raises(SystemExit) as exc:
        cli.run_main("train.py", main)
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"train.py: --in_weights {empty}: is empty (0 bytes: an interrupted download or copy?); download it again")
    assert cli.existing_file("--x", __file__).is_file()
    with pytest.raises(cli.SettingError, match="not found"):
        cli.existing_file("--x", tmp_path / "missing")
    with pytest.raises(cli.SettingError, match="is a file, not a directory"):
        cli.existing_dir("--d", __file__)


def test_help_shows_defaults():
    text = make_parser().format_help()
    assert "(default: 320)" in text and "(default: 1e-05)" in text
    assert "seed (default: 0)" in " ".join(text.split())  # 0 == False, yet a default
    assert "parts\n" in text and "(default: [])" not in text  # an empty default shows nothing


@pytest.mark.parametrize("argv, expected", [
    (["--batch_size", "64"], "prog: --batch_size 64: was renamed to --mineclip_batch_size (frames per forward); use --mineclip_batch_size"),
    (["--batch_size"], "prog: --batch_size: was renamed to --mineclip_batch_size (frames per forward); use --mineclip_batch_size"),
])
def test_a_renamed_option_is_refused_naming_the_new_one(argv, expected, capsys):
    parser = cli.ArgumentParser(prog="prog")
    parser.add_argument("--mineclip_batch_size", type=cli.positive_int, default=256, help="frames")
    cli.renamed_option(parser, "--batch_size", "--mineclip_batch_size", "frames per forward")
    assert "--batch_size" not in parser.format_help()
    assert parser.parse_args([]).mineclip_batch_size == 256
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(argv)
    assert exc.value.code == cli.EXIT_BAD_SETTING and capsys.readouterr().err == expected + "\n"


def test_a_renamed_variable_in_the_environment_is_refused(capsys):
    renamed = {"BATCH_SIZE": ("MINECLIP_BATCH_SIZE", "frames per forward")}
    cli.refuse_renamed_variables("prog", renamed, environ={"OTHER": "1"})  # absent: nothing happens
    with pytest.raises(SystemExit) as exc:
        cli.refuse_renamed_variables("prog", renamed, environ={"BATCH_SIZE": "8"})
    assert exc.value.code == cli.EXIT_BAD_SETTING
    assert capsys.readouterr().err == ("prog: BATCH_SIZE=8: this setting is now MINECLIP_BATCH_SIZE (frames per forward); "
                                       "unset BATCH_SIZE and set MINECLIP_BATCH_SIZE instead\n")
