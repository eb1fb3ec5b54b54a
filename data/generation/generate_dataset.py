r"""Step 1 in one command (what 1_generate_dataset.sh runs): contractor indexes, your own recordings, a check.

    .venv/bin/python data/generation/generate_dataset.py --indexes "8.x 9.x 10.x" --num_episodes 5 \
        --output_dir data/dataset_contractor --mineclip_weights data/weights/mineclip/attn.pth \
        [--custom_input_dir my_recordings --custom_output_dir data/dataset_custom]

1. Every index in --indexes (none when empty: then nothing touches the network) is converted into
   --output_dir (data/generation/convert_from_contractor.py does one index).
2. Recordings in --custom_input_dir (when given) are converted into --custom_output_dir
   (data/generation/convert_custom_data.py does only this).
3. Every dataset written is validated (header counts, checksums, values; no frame decoding).
Before any work: every setting is checked (one-line refusal, exit status 2), and so are the episodes already in
the output directories: made with another MineCLIP or other labelling rules, they are refused rather than kept
(data/generation/rerun_check.py); each output directory and the cache are locked against a second conversion,
and unfinished episodes of killed conversions are removed. One pool of --jobs processes (and MineCLIP copies)
serves every index and the custom step.
Exit status: 0 when everything converted or was skipped as too short and every episode validates, 1 when
anything failed (each failure printed as one line, then the summary).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.episode import find_episode_dirs, is_leftover_dir, validate_episode
from data.generation.contractor_index import index_spec_problem
from data.generation.conversion_jobs import ConversionPool, MineCLIPLoadError, Summary, goal_encoder_spec
from data.generation.conversion_lock import hold_directories, remove_dead_writers
from data.generation.convert_custom_data import IDMSetup, add_idm_arguments, convert_custom, prepare_idm
from data.generation.convert_from_contractor import (
    DownloadSettings,
    add_contractor_arguments,
    check_contractor_arguments,
    convert_index,
)
from data.generation.episode_conversion import (
    SETTING_NAMES,
    add_conversion_arguments,
    check_mineclip_arguments,
    options_from_args,
)
from data.generation.rerun_check import check_output_directories, run_provenance
from toolkit_utils import cli

PROGRAM = "1_generate_dataset.sh"
# Variables of 1_generate_dataset.sh that were renamed: one name means one thing across the toolkit.
RENAMED_VARIABLES = {
    "BATCH_SIZE": ("MINECLIP_BATCH_SIZE", "frames per MineCLIP forward; BATCH_SIZE is the training batch in step 3"),
}


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    p.add_argument("--indexes", default="8.x 9.x 10.x", help="space-separated contractor indexes: versions (6.x .. 10.x, "
                   "basalt-*), index URLs or local index files; empty: none")
    p.add_argument("--output_dir", default="data/dataset_contractor", help="where contractor episodes go")
    p.add_argument("--cache_dir", default="data/contractor_cache", help="downloads in progress (removed per recording once converted)")
    p.add_argument("--custom_input_dir", default="", help="your own recordings (episode_xxx/video.mp4, with actions.jsonl "
                   "when recorded; without it the IDM labels the video: --idm_model, --idm_weights); empty: none")
    p.add_argument("--custom_output_dir", default="data/dataset_custom", help="where episodes of your own recordings go")
    add_contractor_arguments(p)
    add_conversion_arguments(p)
    p.add_argument("--setting_names", choices=SETTING_NAMES, default="options", help="how messages name settings: "
                   "options (--min_timesteps) or script (MIN_TIMESTEPS: 1_generate_dataset.sh passes it, its variables "
                   "are what the user edits)")
    add_idm_arguments(p)
    return p


def check_settings(parser: cli.ArgumentParser, args: argparse.Namespace) -> None:
    """Every check that can fail before work starts (one-line refusals, exit status 2)."""
    cli.refuse_renamed_variables(PROGRAM, RENAMED_VARIABLES)
    check_contractor_arguments(parser, args)
    check_mineclip_arguments(parser, args)
    for spec in args.indexes.split():
        problem = index_spec_problem(spec)
        if problem:
            parser.refuse("--indexes", spec, problem, "give versions such as 10.x, index URLs or paths; empty for none")
    if args.custom_input_dir and not Path(args.custom_input_dir).is_dir():
        parser.refuse("--custom_input_dir", args.custom_input_dir, "is not a directory",
                      "give the folder holding your episode_xxx/ folders, or leave it empty")


def validate_datasets(directories: list[Path]) -> int:
    """Validate every episode of each dataset (no frame decoding); print failures and a line per dataset.

    Returns the number of episodes that failed. Unfinished temporary directories of other writers are not
    episodes: they are counted, not validated.
    """
    failed = 0
    for directory in directories:
        if not directory.is_dir():
            continue
        episodes = [p for p in find_episode_dirs(directory) if not is_leftover_dir(p)]
        bad = 0
        for episode in episodes:
            result = validate_episode(episode, decode_frames=False)
            if not result.ok:
                print(result.line(), flush=True)
                bad += 1
        print(f"Checked {directory}: {len(episodes) - bad} of {len(episodes)} episodes valid", flush=True)
        failed += bad
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_settings(parser, args)
    indexes = args.indexes.split()
    custom_input = Path(args.custom_input_dir) if args.custom_input_dir else None
    output_dir, cache_dir, custom_output = Path(args.output_dir), Path(args.cache_dir), Path(args.custom_output_dir)
    locks = {}
    if indexes:
        locks.update({"--output_dir": output_dir, "--cache_dir": cache_dir})
    if custom_input is not None:
        locks["--custom_output_dir"] = custom_output
    if not locks:
        print("Nothing to do: --indexes is empty and no --custom_input_dir is given")
        return 0
    options = options_from_args(args, args.setting_names)
    spec = goal_encoder_spec(args.mineclip_weights, args.demo_random_mineclip, args.device)
    # Episodes made with other settings would be skipped and kept: refused before any work (rerun_check).
    check_output_directories({k: v for k, v in locks.items() if k != "--cache_dir"}, run_provenance(spec, options))
    downloads = DownloadSettings(cache_dir, args.download_workers, args.retries, args.download_timeout_s, args.keep_cache)
    idm = IDMSetup()
    if custom_input is not None:  # a wrong IDM file is a refused setting, before any work
        idm = prepare_idm(args, custom_input, custom_output, spec.device)
    summary = Summary()
    written = ([output_dir] if indexes else []) + ([custom_output] if custom_input is not None else [])
    with hold_directories(locks):
        for directory in dict.fromkeys(written):
            remove_dead_writers(directory)
        with ConversionPool(args.jobs, spec) as pool:
            try:
                for index in indexes:
                    summary.add(convert_index(index, output_dir, downloads, pool, options, args))
                if custom_input is not None:
                    summary.add(convert_custom(custom_input, custom_output, pool, options, idm))
            except MineCLIPLoadError as e:
                print(f"FAIL {e}", flush=True)
                return 1
        invalid = validate_datasets(list(dict.fromkeys(written)))
    print(f"Done: {summary.line()}" + (f"; {invalid} episode(s) failed validation" if invalid else ""), flush=True)
    return 1 if summary.failed or invalid else 0


if __name__ == "__main__":
    sys.exit(cli.run_main(PROGRAM, main))
