r"""Step 1: download VPT contractor recordings (mp4 + jsonl) and convert them to training episodes.

    .venv/bin/python data/generation/convert_from_contractor.py --index 10.x --num_episodes 5 \
        --output_dir data/dataset_contractor --mineclip_weights data/weights/mineclip/attn.pth

Safe to re-run and to run for days: finished episodes are skipped (when made with this run's MineCLIP and
labelling rules, from the same recording: data/generation/rerun_check.py), interrupted downloads resume (HTTP
Range), an episode directory appears only when complete, and the download cache of a recording is removed
once it converted (or failed to: a re-run downloads it again). A download is accepted only when its status,
length and content fit (an mp4 starts with an ftyp box and its boxes are complete; a jsonl's first line
parses). A recording that fails prints one line, `FAIL <recording>: <file>:<line>: <field>: <what>` or the
reason, and the run goes on; it ends with a summary and exit status 1 if any failed. --jobs processes
convert in parallel; --worker_id/--num_workers split the recordings over machines (each machine with its
own --output_dir: a directory takes one conversion at a time).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from data.generation.contractor_actions import jsonl_start_problem
from data.generation.contractor_index import (
    INDEX_URLS,
    IndexFileError,
    Recording,
    index_spec_problem,
    load_index,
    recordings,
    select_recordings,
)
from data.generation.conversion_jobs import (
    FAIL,
    SKIP,
    ConversionOutcome,
    ConversionPool,
    ConversionTask,
    MineCLIPLoadError,
    Summary,
    goal_encoder_spec,
)
from data.generation.conversion_lock import hold_directories, remove_dead_writers
from data.generation.episode_conversion import (
    ConversionOptions,
    add_conversion_arguments,
    check_mineclip_arguments,
    options_from_args,
)
from data.generation.rerun_check import (
    check_output_directories,
    existing_episode_line,
    recording_difference,
    run_provenance,
)
from data.http_download import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, DownloadError, download_file
from data.video_io import mp4_structure_problem
from toolkit_utils import cli

SKIP_MARKERS = ".skipped"  # <output_dir>/.skipped/<name>.json: recordings that can never make an episode


@dataclasses.dataclass(frozen=True)
class DownloadSettings:
    """How recordings are fetched (see data/http_download.py for what the bounds cost)."""

    cache_dir: Path
    workers: int = 4
    retries: int = DEFAULT_RETRIES
    timeout_s: float = DEFAULT_TIMEOUT_S
    keep_cache: bool = False


def add_contractor_arguments(parser: cli.ArgumentParser) -> None:
    """Settings of the contractor path shared with step 1's entrypoint (all but the index and directories)."""
    a = parser.add_argument
    a("--num_episodes", type=cli.int_range(0, allow=(-1,)), default=5, help="recordings to take from each index (-1: all), chosen by a seeded shuffle")
    a("--selection_seed", type=int, default=0, help="seed of the shuffle that picks the recordings")
    a("--worker_id", type=cli.non_negative_int, default=0, help="this machine's share: recordings worker_id, worker_id + num_workers, ...")
    a("--num_workers", type=cli.positive_int, default=1, help="machines sharing the chosen recordings (each with its own --output_dir)")
    a("--download_workers", type=cli.positive_int, default=4, help="recordings downloaded in parallel ahead of conversion")
    a("--retries", type=cli.non_negative_int, default=DEFAULT_RETRIES, help="download attempts without progress before a file is given up, after the first")
    a("--download_timeout_s", type=cli.positive_float, default=DEFAULT_TIMEOUT_S, help="seconds without a byte before a download attempt counts as failed")
    a("--retry_skipped", action="store_true", help="also retry recordings skipped earlier as too short")
    a("--keep_cache", action="store_true", help="keep downloaded files after conversion")


def check_contractor_arguments(parser: cli.ArgumentParser, args: argparse.Namespace) -> None:
    if args.worker_id >= args.num_workers:
        parser.refuse("--worker_id", args.worker_id, f"must be below --num_workers {args.num_workers}",
                      f"use 0..{args.num_workers - 1}")


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog="convert_from_contractor.py", description=__doc__)
    p.add_argument("--index", default="10.x", help=f"a version ({', '.join(INDEX_URLS)}), an index URL or a local index file")
    p.add_argument("--output_dir", default="data/dataset_contractor", help="where episode directories go")
    p.add_argument("--cache_dir", default="data/contractor_cache", help="downloads in progress (removed per recording once converted)")
    add_contractor_arguments(p)
    add_conversion_arguments(p)
    return p


def skip_settings(options: ConversionOptions) -> dict:
    """The settings that decide whether a recording is too short (written into its skip marker)."""
    return {"min_timesteps": options.min_timesteps, "null_filter": options.null_filter,
            "camera_labels": options.camera_labels}


def skipped_with(marker: Path, options: ConversionOptions) -> bool:
    """Whether a recording was skipped as too short under these settings (a marker exists and matches them).

    Other settings (a lower --min_timesteps, another null filter) can make it long enough: it is tried again.
    Markers written before settings were recorded in them still count.
    """
    try:
        settings = json.loads(marker.read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        return False
    return settings is None or settings == skip_settings(options)


def _fetch(recording: Recording, downloads: DownloadSettings) -> tuple[Path, Path]:
    """Local paths of a recording's video and actions, downloading into the cache when remote.

    A local file that is missing raises OSError with the one line to print (the path, what the index lists, the fix).
    """
    if recording.is_local:
        for path in (Path(recording.video), Path(recording.actions)):
            if not path.is_file():
                raise OSError(f"{path}: not found (the index lists {recording.relpath}); put the recording there, or fix "
                              "the index's basedir or relpaths")
        return Path(recording.video), Path(recording.actions)
    target = downloads.cache_dir / recording.name
    limits = {"retries": downloads.retries, "timeout_s": downloads.timeout_s}
    video = download_file(recording.video, target / "video.mp4", desc=f"{recording.name[:32]}.mp4",
                          check=mp4_structure_problem, **limits)
    actions = download_file(recording.actions, target / "actions.jsonl", desc=f"{recording.name[:32]}.jsonl",
                            check=jsonl_start_problem, **limits)
    return video, actions


def convert_index(index_spec: str, output_dir: Path, downloads: DownloadSettings, pool: ConversionPool,
                  options: ConversionOptions, args: argparse.Namespace) -> Summary:
    """Convert this worker's share of one index into `output_dir`; every problem is a line, never an exception.

    The caller holds the locks of output_dir and the cache. Raises MineCLIPLoadError (nothing can convert).
    """
    summary = Summary()
    try:
        index = load_index(index_spec, downloads.cache_dir, downloads.retries, downloads.timeout_s)
    except IndexFileError as e:
        print(f"FAIL index {e}", flush=True)
        summary.failed += 1
        return summary
    found, refused = recordings(index)
    for reason in refused:
        print(f"REFUSED index entry: {reason}")
    chosen = select_recordings(found, args.num_episodes, args.worker_id, args.num_workers, args.selection_seed)
    skip_dir = output_dir / SKIP_MARKERS
    todo, made_from_others = [], []
    for rec in chosen:
        episode = output_dir / rec.name
        if episode.is_dir():  # complete (episodes appear only whole): skipped, unless made from another recording
            difference = recording_difference(episode, {"kind": "contractor", "relpath": rec.relpath})
            if difference:
                made_from_others.append(ConversionOutcome(rec.name, FAIL, existing_episode_line(episode, difference)))
        elif args.retry_skipped or not skipped_with(skip_dir / f"{rec.name}.json", options):
            todo.append(rec)
    done = len(chosen) - len(todo) - len(made_from_others)
    print(f"{index.location}: {len(found)} recordings; this worker's share {len(chosen)}, "
          f"{done} already done or skipped, {len(todo)} to convert into {output_dir}", flush=True)
    for outcome in made_from_others:
        summary.count(outcome)
    if not todo:
        return summary

    def finished(rec: Recording, outcome: ConversionOutcome) -> None:
        summary.count(outcome)
        bar.update(1)
        if outcome.status == SKIP:
            skip_dir.mkdir(exist_ok=True)
            (skip_dir / f"{rec.name}.json").write_text(json.dumps({"relpath": rec.relpath, "reason": outcome.message,
                                                                   "settings": skip_settings(options)}))
        # A failed conversion may come from a bad download (a truncated video): a re-run fetches it anew.
        if not rec.is_local and not downloads.keep_cache:
            shutil.rmtree(downloads.cache_dir / rec.name, ignore_errors=True)

    # Downloads run ahead in threads, at most --download_workers at once and at most jobs + download_workers
    # recordings waiting in the cache; conversions run on the pool as their files arrive.
    upcoming = collections.deque(todo)
    fetching: dict[concurrent.futures.Future, Recording] = {}
    converting: dict[concurrent.futures.Future, tuple[Recording, ConversionTask]] = {}
    bar = tqdm(total=len(todo), desc="recordings", unit="rec")
    with concurrent.futures.ThreadPoolExecutor(max_workers=downloads.workers) as fetcher:

        def fill() -> None:
            while upcoming and len(fetching) < downloads.workers and len(fetching) + len(converting) < pool.jobs + downloads.workers:
                rec = upcoming.popleft()
                fetching[fetcher.submit(_fetch, rec, downloads)] = rec

        fill()
        while fetching or converting:
            done, _ = concurrent.futures.wait([*fetching, *converting], return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                if future in fetching:
                    rec = fetching.pop(future)
                    try:
                        video, actions = future.result()
                    except (DownloadError, OSError) as e:  # the partial download stays: a re-run resumes it
                        finished(rec, ConversionOutcome(rec.name, FAIL, str(e).splitlines()[0]))
                        continue
                    source = {"kind": "contractor", "index": index_spec, "index_location": index.location,
                              "relpath": rec.relpath, "video": rec.video, "actions": rec.actions}
                    task = ConversionTask(rec.name, str(video), str(actions), str(output_dir / rec.name), source, options)
                    converting[pool.submit(task)] = (rec, task)
                else:
                    rec, task = converting.pop(future)
                    finished(rec, pool.outcome(task, future))
            fill()
    bar.close()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_contractor_arguments(parser, args)
    check_mineclip_arguments(parser, args)
    problem = index_spec_problem(args.index)
    if problem:
        parser.refuse("--index", args.index, problem, "give a version such as 10.x, an index URL or a path")
    options = options_from_args(args)
    output_dir, cache_dir = Path(args.output_dir), Path(args.cache_dir)
    downloads = DownloadSettings(cache_dir, args.download_workers, args.retries, args.download_timeout_s, args.keep_cache)
    spec = goal_encoder_spec(args.mineclip_weights, args.demo_random_mineclip, args.device)
    check_output_directories({"--output_dir": output_dir}, run_provenance(spec, options))  # before any work
    with hold_directories({"--output_dir": output_dir, "--cache_dir": cache_dir}):
        remove_dead_writers(output_dir)
        with ConversionPool(args.jobs, spec) as pool:
            try:
                summary = convert_index(args.index, output_dir, downloads, pool, options, args)
            except MineCLIPLoadError as e:
                print(f"FAIL {e}", flush=True)
                return 1
    print(f"Done: {summary.line()}", flush=True)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(cli.run_main(build_parser().prog, main))
