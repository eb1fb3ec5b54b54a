r"""Convert your own recordings into training episodes.

    .venv/bin/python data/generation/convert_custom_data.py --input_dir my_recordings --output_dir data/dataset_custom \
        --mineclip_weights data/weights/mineclip/attn.pth

Input layout: <input_dir>/episode_xxx/video.mp4 and, when the actions were recorded, actions.jsonl with one line per
video frame, either in the VPT contractor format (mouse/keyboard/hotbar...) or one MineRL env action per line
({"forward": 1, "camera": [pitch, yaw], ...}); without actions.jsonl the IDM labels the video (below). Any
resolution: frames are brought to 640x360 first (what the agent sees in MineRL), then follow the contractor
pipeline (cursor, 128x128 and 256x160 resizes). Any frame rate from 5 to 240 fps: resampled to 20 fps, every
recorded action counted once (merged frames combine their actions, a repeated frame shares its camera move:
data/generation/episode_conversion.py).
The labelling rules (--camera_labels, --null_filter) are the same as for contractor data. A recording that
fails prints one line and the others go on.

Recordings without actions.jsonl are labelled by VPT's inverse dynamics model when --idm_model and
--idm_weights are given (data/generation/idm_labelling.py: 20 fps frames, chunks of 128, argmax actions and
their confidence, the camera stored as predicted); their episodes say `"actions": "idm"` in metadata.json's
`source`, with the IDM files' sha256. Without usable IDM files they fail with a line naming the two options.
"""

from __future__ import annotations

import concurrent.futures
import sys
from pathlib import Path

from tqdm import tqdm

from data.generation.conversion_jobs import (
    FAIL,
    OK,
    SKIP,
    ConversionOutcome,
    ConversionPool,
    ConversionTask,
    GoalEncoderSpec,
    MineCLIPLoadError,
    Summary,
    goal_encoder_spec,
)
from data.generation.conversion_lock import hold_directories, remove_dead_writers
from data.generation import idm_labelling
from data.generation.episode_conversion import (
    ConversionOptions,
    add_conversion_arguments,
    check_mineclip_arguments,
    load_goal_encoder,
    options_from_args,
)
from data.generation.rerun_check import (
    check_output_directories,
    existing_episode_line,
    recording_difference,
    run_provenance,
)
from toolkit_utils import cli

VIDEO_FILE, ACTIONS_FILE = "video.mp4", "actions.jsonl"


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog="convert_custom_data.py", description=__doc__)
    p.add_argument("--input_dir", required=True, help="directory of episode_xxx/ folders, each with video.mp4 and, when "
                   "recorded, actions.jsonl; without it the IDM labels the video (--idm_model, --idm_weights)")
    p.add_argument("--output_dir", default="data/dataset_custom", help="where episode directories go")
    add_conversion_arguments(p)
    add_idm_arguments(p)
    return p


def add_idm_arguments(p: cli.ArgumentParser) -> None:
    """The settings of labelling recordings without actions (this converter and generate_dataset.py)."""
    p.add_argument("--idm_model", default=None, help="VPT's 4x_idm.model: label recordings without actions.jsonl (with --idm_weights)")
    p.add_argument("--idm_weights", default=None, help="VPT's 4x_idm.weights, loaded strictly (with --idm_model)")
    p.add_argument("--idm_batch_size", type=cli.int_range(1), default=4, help="recordings labelled together per IDM forward (GPU: 4-16)")
    p.add_argument("--idm_dtype", choices=sorted(idm_labelling.DTYPES), default="fp32",
                   help="IDM precision: fp32 computes what VPT's code computes; bf16 is faster on GPUs (labels can differ where two classes are close)")


class IDMSetup:
    """The labeller for the recordings of a run that have no actions, or why there is none."""

    def __init__(self, labeller: idm_labelling.IDMLabeller | None = None, info: dict | None = None, missing: str = "") -> None:
        self.labeller, self.info, self.missing = labeller, info, missing


def prepare_idm(args, input_dir: Path, output_dir: Path, device: str) -> IDMSetup:
    """Load the IDM before any work when a recording still to convert has no actions.

    IDM files that are not given or not there: no labeller, and `missing` says what to do (those recordings
    fail alone). Files that are there but wrong raise cli.SettingError (one line naming the option).
    """
    todo = [p for p in recordings_without_actions(list_recordings(input_dir)) if not (output_dir / p.name).is_dir()]
    if not todo:
        return IDMSetup()
    if not (args.idm_model and args.idm_weights):
        return IDMSetup(missing="pass --idm_model and --idm_weights (VPT's 4x_idm.model and 4x_idm.weights, from "
                                "ONLY=idm bash download_weights.sh) to label actions from the video with VPT's inverse "
                                "dynamics model, record actions, or leave these recordings out")
    absent = [f"{option} {path}" for option, path in (("--idm_model", args.idm_model), ("--idm_weights", args.idm_weights))
              if not Path(path).exists()]
    if absent:
        return IDMSetup(missing=f"{' and '.join(absent)} not found: download them with ONLY=idm bash download_weights.sh, "
                                "record actions, or leave these recordings out")
    labeller = idm_labelling.load_labeller(args.idm_model, args.idm_weights, device, args.idm_dtype, args.idm_batch_size)
    return IDMSetup(labeller, idm_labelling.idm_metadata(args.idm_model, args.idm_weights, labeller))


def list_recordings(input_dir: Path) -> list[Path]:
    """The recording folders of `input_dir` (hidden folders left out), sorted by name."""
    return sorted(p for p in input_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def recordings_without_actions(episodes: list[Path]) -> list[Path]:
    """Recordings that have a video but no actions.jsonl (labelled by the IDM, see prepare_idm)."""
    return [p for p in episodes if (p / VIDEO_FILE).is_file() and not (p / ACTIONS_FILE).is_file()]


def recording_source(recording: Path) -> dict:
    """What an episode records about the recording it was made from (`source` in metadata.json).

    The files' sizes identify the recording when a re-run meets its episode (data.generation.rerun_check): a
    moved folder is the same recording, another video or an edited actions file is not.
    """
    video, actions = recording / VIDEO_FILE, recording / ACTIONS_FILE
    source = {"kind": "custom", "video": str(video), "video_bytes": video.stat().st_size}
    if actions.is_file():
        return {**source, "actions": "recorded", "actions_file": str(actions), "actions_bytes": actions.stat().st_size}
    return {**source, "actions": "idm"}


def convert_custom(input_dir: Path, output_dir: Path, pool: ConversionPool, options: ConversionOptions,
                   idm: IDMSetup | None = None) -> Summary:
    """Convert every recording of `input_dir` not yet in `output_dir` (the caller holds output_dir's lock).

    Recordings with actions go through `pool`; those without are labelled by `idm` (prepare_idm) in this
    process, then converted like the others. Raises MineCLIPLoadError (nothing can convert).
    """
    idm = idm or IDMSetup()
    summary = Summary()
    episodes = list_recordings(input_dir)
    todo = [p for p in episodes if not (output_dir / p.name).is_dir()]
    made_from_others = []  # an episode of this name exists, made from another recording: kept, and named
    for recording in sorted(set(episodes) - set(todo)):
        episode = output_dir / recording.name
        difference = (recording / VIDEO_FILE).is_file() and recording_difference(episode, recording_source(recording))
        if difference:
            made_from_others.append(ConversionOutcome(recording.name, FAIL, existing_episode_line(episode, difference)))
    unlabelled = recordings_without_actions(todo)
    done = len(episodes) - len(todo) - len(made_from_others)
    print(f"{input_dir}: {len(episodes)} recordings, {done} already converted, "
          f"{len(todo)} to convert into {output_dir} ({len(unlabelled)} without actions)", flush=True)
    for outcome in made_from_others:
        summary.count(outcome)
    if unlabelled and idm.labeller is None:
        names = ", ".join(p.name for p in unlabelled[:5]) + ("..." if len(unlabelled) > 5 else "")
        print(f"FAIL {input_dir}: {len(unlabelled)} recording(s) have {VIDEO_FILE} but no {ACTIONS_FILE} ({names}); "
              f"training needs the action of every frame: {idm.missing or 'pass --idm_model and --idm_weights'}", flush=True)
        summary.failed += len(unlabelled)
    futures = {}
    for episode_dir in todo:
        if episode_dir in unlabelled:
            continue
        video = episode_dir / VIDEO_FILE
        if not video.is_file():
            summary.count(ConversionOutcome(episode_dir.name, FAIL, f"{episode_dir}: no {VIDEO_FILE}"))
            continue
        source = recording_source(episode_dir)
        task = ConversionTask(episode_dir.name, str(video), str(episode_dir / ACTIONS_FILE),
                              str(output_dir / episode_dir.name), source, options)
        futures[pool.submit(task)] = task
    for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="recordings", unit="rec",
                       disable=not futures):
        summary.count(pool.outcome(futures[future], future))
    if unlabelled and idm.labeller is not None:
        label_and_convert(unlabelled, output_dir, pool.spec, options, idm, summary)
    return summary


def label_and_convert(recordings: list[Path], output_dir: Path, spec: GoalEncoderSpec, options: ConversionOptions,
                      idm: IDMSetup, summary: Summary) -> None:
    """Label `recordings` with the IDM (batched) and convert each as soon as it is labelled (in this process)."""
    try:
        goal_encoder, mineclip_info = load_goal_encoder(spec.mineclip_weights, spec.demo_random_mineclip, spec.device,
                                                        spec.mineclip_sha256)
    except (OSError, ValueError) as e:
        raise MineCLIPLoadError(f"MineCLIP {spec.mineclip_weights}: {e}") from None
    outcomes = idm_labelling.label_and_convert(recordings, output_dir, VIDEO_FILE, idm.labeller, idm.info, goal_encoder,
                                               options, spec.device, mineclip_info)
    for outcome in tqdm(outcomes, total=len(recordings), desc="IDM-labelled recordings", unit="rec"):
        status = FAIL if outcome.failed else OK if outcome.episode else SKIP
        summary.count(ConversionOutcome(outcome.recording.name, status, outcome.message))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_mineclip_arguments(parser, args)
    input_dir, output_dir = Path(args.input_dir), Path(args.output_dir)
    if not input_dir.is_dir():
        parser.refuse("--input_dir", input_dir, "is not a directory", "give the folder holding your episode_xxx/ folders")
    spec = goal_encoder_spec(args.mineclip_weights, args.demo_random_mineclip, args.device)
    options = options_from_args(args)
    # Episodes made with other settings would be skipped and kept: refused before any work (rerun_check).
    check_output_directories({"--output_dir": output_dir}, run_provenance(spec, options))
    try:  # a wrong IDM file is a refused setting, before any work
        idm = prepare_idm(args, input_dir, output_dir, spec.device)
    except cli.SettingError as e:
        cli.exit_with_refusal(parser.prog, str(e))
    with hold_directories({"--output_dir": output_dir}):
        remove_dead_writers(output_dir)
        with ConversionPool(args.jobs, spec) as pool:
            try:
                summary = convert_custom(input_dir, output_dir, pool, options, idm)
            except MineCLIPLoadError as e:
                print(f"FAIL {e}", flush=True)
                return 1
    print(f"Done: {summary.line()}", flush=True)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(cli.run_main(build_parser().prog, main))
