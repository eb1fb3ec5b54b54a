"""Step 1: download VPT contractor recordings (mp4 + jsonl) and convert them to training episodes.

    python data/generation/convert_from_contractor.py --index 10.x --num_episodes 5 \
        --output_dir data/dataset_contractor --mineclip_weights data/weights/mineclip/attn.pth

Safe to re-run and to run for days: finished episodes are skipped, interrupted downloads resume
(HTTP Range), an episode directory appears only when complete, and the download cache of a recording
is removed only after it converted. Split the work over machines with --worker_id/--num_workers.
A recording that fails (corrupt video, truncated jsonl, length mismatch, download error) is reported
in one line and the run goes on; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from data.generation.contractor_actions import ActionFileError, load_actions_file
from data.generation.contractor_index import INDEX_URLS, Recording, load_index, recordings, select_recordings
from data.generation.episode_conversion import (
    ConversionError,
    add_conversion_arguments,
    options_from_args,
    convert_recording,
    load_goal_encoder,
)
from data.http_download import DownloadError, download_file

SKIP_MARKERS = ".skipped"  # <output_dir>/.skipped/<name>.json: recordings that can never make an episode


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", default="10.x", help=f"a version ({', '.join(INDEX_URLS)}), an index URL or a local index file")
    p.add_argument("--output_dir", default="data/dataset_contractor", help="where episode directories go")
    p.add_argument("--cache_dir", default="data/contractor_cache", help="downloads in progress (removed per recording once converted)")
    p.add_argument("--num_episodes", type=int, default=5, help="recordings to take from the index (-1: all), chosen by a seeded shuffle")
    p.add_argument("--selection_seed", type=int, default=0, help="seed of the shuffle that picks the recordings")
    p.add_argument("--worker_id", type=int, default=0, help="this worker's share: recordings worker_id, worker_id + num_workers, ...")
    p.add_argument("--num_workers", type=int, default=1, help="workers sharing the chosen recordings")
    p.add_argument("--download_workers", type=int, default=4, help="recordings downloaded in parallel ahead of conversion")
    p.add_argument("--retries", type=int, default=5, help="download retries (with backoff) per file")
    add_conversion_arguments(p, min_timesteps=1000)
    p.add_argument("--retry_skipped", action="store_true", help="also retry recordings skipped earlier as too short")
    p.add_argument("--keep_cache", action="store_true", help="keep downloaded files after conversion")
    return p.parse_args(argv)


def fetch(recording: Recording, cache_dir: Path, retries: int) -> tuple[Path, Path]:
    """Local paths of a recording's video and actions, downloading into the cache when remote."""
    if recording.is_local:
        return Path(recording.video), Path(recording.actions)
    target = cache_dir / recording.name
    video = download_file(recording.video, target / "video.mp4", retries=retries, desc=f"{recording.name[:32]}.mp4")
    actions = download_file(recording.actions, target / "actions.jsonl", retries=retries, desc=f"{recording.name[:32]}.jsonl")
    return video, actions


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    output_dir, cache_dir = Path(args.output_dir), Path(args.cache_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    index, location = load_index(args.index, cache_dir)
    found, refused = recordings(index)
    for reason in refused:
        print(f"REFUSED index entry: {reason}")
    chosen = select_recordings(found, args.num_episodes, args.worker_id, args.num_workers, args.selection_seed)
    skip_dir = output_dir / SKIP_MARKERS
    todo = []
    for rec in chosen:
        if (output_dir / rec.name).is_dir():
            continue  # complete: episodes only appear when fully written
        if (skip_dir / f"{rec.name}.json").exists() and not args.retry_skipped:
            continue
        todo.append(rec)
    print(f"{location}: {len(found)} recordings; this worker's share {len(chosen)}, "
          f"{len(chosen) - len(todo)} already done or skipped, {len(todo)} to convert into {output_dir}")
    if not todo:
        return 0

    goal_encoder, mineclip_info = load_goal_encoder(args.mineclip_weights, args.demo_random_mineclip, device)
    options = options_from_args(args)
    failures = converted = skipped = 0
    # Downloads run ahead in threads (at most --download_workers recordings, so the cache stays small)
    # while the main thread decodes, embeds and writes.
    upcoming = iter(todo)
    pending: collections.deque = collections.deque()
    bar = tqdm(total=len(todo), desc="recordings", unit="rec")
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.download_workers)) as pool:

        def submit_next() -> None:
            rec = next(upcoming, None)
            if rec is not None:
                pending.append((rec, pool.submit(fetch, rec, cache_dir, args.retries)))

        for _ in range(max(1, args.download_workers)):
            submit_next()
        while pending:
            rec, future = pending.popleft()
            submit_next()
            bar.update(1)
            start = time.time()
            try:
                video, actions_path = future.result()
                actions = load_actions_file(actions_path, truncate_camera=args.truncate_camera)
                source = {"kind": "contractor", "index": args.index, "index_location": location,
                          "relpath": rec.relpath, "video": rec.video, "actions": rec.actions, "mineclip": mineclip_info}
                episode, message = convert_recording(video, actions, output_dir / rec.name, goal_encoder, options,
                                                     source, device)
            except (DownloadError, ActionFileError, ConversionError, OSError) as e:
                failures += 1
                tqdm.write(f"FAIL {rec.name}: {str(e).splitlines()[0]}")
                continue  # the cache stays: a re-run resumes the download
            if episode is None:
                skipped += 1
                skip_dir.mkdir(exist_ok=True)
                (skip_dir / f"{rec.name}.json").write_text(json.dumps({"relpath": rec.relpath, "reason": message}))
                tqdm.write(f"SKIP {rec.name}: {message}")
            else:
                converted += 1
                tqdm.write(f"OK   {episode}: {message} in {time.time() - start:.0f}s")
            if not rec.is_local and not args.keep_cache:
                shutil.rmtree(cache_dir / rec.name, ignore_errors=True)
    bar.close()
    print(f"Done: {converted} converted, {skipped} skipped, {failures} failed (re-run to retry failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
