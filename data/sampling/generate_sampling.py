"""Step 2: choose which episodes train and which validate; writes <name>_train.txt and <name>_val.txt.

    python data/sampling/generate_sampling.py --type neurips --name finetune --output_dir data/samplings \
        --dataset_dirs data/dataset_contractor --val_frames 20000 --train_frames -1
    python data/sampling/generate_sampling.py --type mixed --name mix --output_dir data/samplings \
        --dataset_dirs data/dataset_contractor,data/dataset_custom --dataset_weights 0.8,0.2 ...

Deterministic: the same directories, arguments and --seed give the same files on any machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.episode import EMBED_START, find_episode_dirs, is_leftover_dir, validate_episode

Episode = tuple[str, int]  # (path as written to the sampling file, number of frames)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--type", choices=["neurips", "mixed"], default="neurips", help="neurips: one dataset; mixed: several, frames shared by --dataset_weights")
    p.add_argument("--name", required=True, help="sampling name; training reads <output_dir>/<name>_train.txt and _val.txt")
    p.add_argument("--output_dir", default="data/samplings", help="where the sampling files go")
    p.add_argument("--dataset_dirs", default="data/dataset_contractor", help="comma-separated dataset directories (episode directories inside)")
    p.add_argument("--dataset_weights", default=None, help="mixed: comma-separated share of the frame budget per dataset, e.g. 0.8,0.2")
    p.add_argument("--val_frames", type=int, default=100_000, help="frames for validation (whole episodes are added until reached)")
    p.add_argument("--train_frames", type=int, default=-1, help="frames for training; -1 = all remaining episodes")
    p.add_argument("--val_from", default=None, help="reuse the validation episodes of this existing sampling name (comparable val loss across runs)")
    p.add_argument("--T", type=int, default=320, help="training sample length: episodes shorter than T + 15 frames are left out (use the T you train with)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode shuffle")
    p.add_argument("--decode_frames", action="store_true", help="also decode every frame while validating (slow, thorough)")
    p.add_argument("--trust_legacy_pickle", action="store_true", help="accept episodes in the original STEVE-1 pickle layout")
    return p.parse_args(argv)


def list_valid_episodes(dataset_dir: str, min_frames: int, decode_frames: bool, trust_legacy_pickle: bool) -> tuple[list[Episode], list[str]]:
    """Episodes of one dataset directory that validate and are long enough, sorted by name; plus why others were left out."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise SystemExit(f"generate_sampling: dataset directory {dataset_dir} does not exist (run 1_generate_dataset.sh first)")
    episodes, rejected = [], []
    for path in tqdm(find_episode_dirs(root), desc=f"validating {dataset_dir}", unit="episode"):
        if is_leftover_dir(path):
            rejected.append(f"{path}: unfinished episode left by an interrupted conversion (safe to delete when no conversion runs)")
            continue
        result = validate_episode(path, trust_legacy_pickle=trust_legacy_pickle, decode_frames=decode_frames)
        if not result.ok:
            rejected.append(f"{path}: {'; '.join(result.errors)}")
        elif result.num_frames < min_frames:
            rejected.append(f"{path}: {result.num_frames} frames, shorter than {min_frames}")
        else:
            episodes.append((os.path.join(dataset_dir, path.name), result.num_frames))
    return episodes, rejected


def take_frames(episodes: list[Episode], budget: int) -> tuple[list[Episode], list[Episode]]:
    """Whole episodes from the front until `budget` frames are reached (-1: all); returns (taken, rest)."""
    if budget < 0:
        return list(episodes), []
    taken, frames = [], 0
    for episode in episodes:
        if frames >= budget:
            break
        taken.append(episode)
        frames += episode[1]
    return taken, episodes[len(taken):]


def total(episodes: list[Episode]) -> int:
    return sum(n for _, n in episodes)


def read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise SystemExit(f"generate_sampling: --val_from file {path} not found")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def parse_weights(args: argparse.Namespace, n_dirs: int) -> list[float]:
    if args.type == "neurips":
        if n_dirs != 1:
            raise SystemExit("generate_sampling: --type neurips takes one --dataset_dirs entry (use --type mixed for several)")
        return [1.0]
    if args.dataset_weights is None:
        raise SystemExit("generate_sampling: --type mixed needs --dataset_weights, one per dataset dir (e.g. 0.8,0.2)")
    try:
        weights = [float(w) for w in args.dataset_weights.split(",")]
    except ValueError:
        raise SystemExit(f"generate_sampling: --dataset_weights {args.dataset_weights!r} must be comma-separated numbers") from None
    if len(weights) != n_dirs or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise SystemExit(f"generate_sampling: --dataset_weights needs {n_dirs} non-negative numbers with a positive sum, got {args.dataset_weights}")
    return [w / sum(weights) for w in weights]


def make_sampling(args: argparse.Namespace) -> dict:
    """Split every dataset's valid episodes into train and val; returns the summary written beside the lists."""
    dirs = [d for d in args.dataset_dirs.split(",") if d]
    weights = parse_weights(args, len(dirs))
    min_frames = args.T + EMBED_START
    listed_val = read_list(Path(args.output_dir) / f"{args.val_from}_val.txt") if args.val_from else None
    fixed_val = set(listed_val) if listed_val is not None else None
    train, val, summary = [], [], {"name": args.name, "type": args.type, "seed": args.seed, "T": args.T, "datasets": {}}
    for index, (dataset_dir, weight) in enumerate(zip(dirs, weights)):
        episodes, rejected = list_valid_episodes(dataset_dir, min_frames, args.decode_frames, args.trust_legacy_pickle)
        order = np.random.default_rng([args.seed, index]).permutation(len(episodes))
        episodes = [episodes[i] for i in order]
        if fixed_val is not None:
            ds_val = [e for e in episodes if e[0] in fixed_val]
            pool = [e for e in episodes if e[0] not in fixed_val]
        else:
            val_budget = round(args.val_frames * weight)
            ds_val, pool = take_frames(episodes, val_budget)
            if total(ds_val) < val_budget:
                raise SystemExit(
                    f"generate_sampling: {dataset_dir} has {total(episodes):,} frames in {len(episodes)} usable episodes "
                    f"(>= {min_frames} frames each); validation alone needs {val_budget:,}. Lower --val_frames or add episodes."
                )
        train_budget = -1 if args.train_frames < 0 else round(args.train_frames * weight)
        # A dataset given weight 0 contributes nothing (not even with --train_frames -1).
        ds_train, _ = take_frames(pool, train_budget) if weight > 0 else ([], pool)
        if weight > 0 and (not ds_train or (train_budget >= 0 and total(ds_train) < train_budget)):
            raise SystemExit(
                f"generate_sampling: {dataset_dir} has {total(pool):,} frames left for training in {len(pool)} episodes "
                f"after validation; {'at least one episode' if train_budget < 0 else f'{train_budget:,} frames'} needed. "
                "Lower --train_frames/--val_frames or add episodes."
            )
        train += ds_train
        val += ds_val
        summary["datasets"][dataset_dir] = {
            "weight": weight, "train_episodes": len(ds_train), "train_frames": total(ds_train),
            "val_episodes": len(ds_val), "val_frames": total(ds_val), "left_out": rejected,
        }
    if fixed_val is not None:
        # Exactly as listed (same order: validation samples and their seeded goals depend on it),
        # even episodes from other datasets.
        val = [(p, 0) for p in listed_val]
    summary.update(train_episodes=len(train), train_frames=total(train), val_episodes=len(val),
                   val_frames=total(val) if fixed_val is None else None)
    return {"train": [p for p, _ in train], "val": [p for p, _ in val], "summary": summary}


def write_sampling(result: dict, output_dir: str, name: str) -> list[Path]:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{name}_train.txt", out / f"{name}_val.txt", out / f"{name}_summary.json"]
    files[0].write_text("".join(p + "\n" for p in result["train"]))
    files[1].write_text("".join(p + "\n" for p in result["val"]))
    files[2].write_text(json.dumps(result["summary"], indent=2) + "\n")
    return files


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = make_sampling(args)
    files = write_sampling(result, args.output_dir, args.name)
    s = result["summary"]
    for dataset_dir, d in s["datasets"].items():
        print(f"{dataset_dir}: train {d['train_episodes']} episodes / {d['train_frames']:,} frames, "
              f"val {d['val_episodes']} episodes / {d['val_frames']:,} frames, left out {len(d['left_out'])}")
        for line in d["left_out"][:10]:
            print(f"  left out {line}")
    print(f"Total: train {s['train_episodes']} episodes / {s['train_frames']:,} frames; val {s['val_episodes']} episodes")
    print("Wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
