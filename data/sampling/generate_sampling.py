r"""Step 2: choose which episodes train and which validate; writes <name>_train.txt, <name>_val.txt and
<name>_summary.json.

    .venv/bin/python data/sampling/generate_sampling.py --type neurips --name finetune --output_dir data/samplings \
        --dataset_dirs data/dataset_contractor --val_frames 20000 --train_frames -1
    .venv/bin/python data/sampling/generate_sampling.py --type mixed --name mix --output_dir data/samplings \
        --dataset_dirs data/dataset_contractor,data/dataset_custom --dataset_weights 0.8,0.2 --val_frames 20000

Whole episodes, shuffled with --split_seed; train and val never share one. A mixed sampling gives every
dataset its --dataset_weights share of the validation and of the training frames (within one episode):
with --train_frames -1 the largest training set that keeps those shares with the data available. Episodes
converted with different labelling rules (camera labels, null filter: metadata.json "conversion") are not
put into one sampling unless --allow_mixed_labels; episodes whose goals were embedded with random MineCLIP
weights (step 1's demo flag) are refused unless --allow_demo_embeddings. Deterministic: the same
directories, arguments and --split_seed give the same files on any machine. Existing lists of the same --name
are kept: a re-run that gives the same lists writes nothing, a different result is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.episode import EMBED_START, find_episode_dirs, is_leftover_dir, validate_episode
from data.episode.provenance import read_provenance
from toolkit_utils import cli

PROG = "generate_sampling.py"
Episode = tuple[str, int]  # (path as written to the sampling file, number of frames)
Made = tuple[tuple[str, str], bool]  # (labelling rules (camera labels, null filter), demo MineCLIP embeddings)


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog=PROG, description=__doc__)
    a = p.add_argument
    a("--type", choices=["neurips", "mixed"], default="neurips", help="neurips: one dataset; mixed: several, frames shared by --dataset_weights")
    a("--name", required=True, help="sampling name; training reads <output_dir>/<name>_train.txt and _val.txt")
    a("--output_dir", default="data/samplings", help="where the sampling files go")
    a("--dataset_dirs", type=cli.comma_list(), default="data/dataset_contractor", help="comma-separated dataset directories (episode directories inside)")
    a("--dataset_weights", type=_weights, default=None, help="mixed: share of the frames per dataset, comma-separated, e.g. 0.8,0.2 (normalised to sum 1)")
    a("--val_frames", type=cli.non_negative_int, default=100_000, help="frames for validation (whole episodes are added until reached)")
    a("--train_frames", type=cli.int_range(1, allow=(-1,)), default=-1, help="frames for training; -1: as many as the data gives (mixed: keeping the weights)")
    a("--val_from", default=None, help="reuse the validation episodes of this existing sampling name (comparable val loss across runs)")
    a("--T", type=cli.positive_int, default=320, help="training sample length: episodes shorter than T + 15 frames are left out (use the T you train with)")
    a("--split_seed", type=cli.non_negative_int, default=0, help="seed of the episode shuffle (not the training seed)")
    a("--seed", type=int, default=None, help=argparse.SUPPRESS)  # the old name: refused with the new one
    a("--allow_mixed_labels", action="store_true", help="allow episodes converted with different labelling rules in one sampling")
    a("--allow_demo_embeddings", action="store_true", help="allow episodes whose goals were embedded with random MineCLIP "
      "weights (step 1's --demo_random_mineclip): for a pipeline demo only, their goals mean nothing")
    a("--decode_frames", action="store_true", help="also decode every frame while validating (slow, thorough)")
    a("--trust_legacy_pickle", action="store_true", help="accept episodes in the original STEVE-1 pickle layout")
    a("--overwrite", action="store_true", help="replace an existing sampling of this --name that has other lists (default: refuse)")
    return p


def _weights(text: str) -> list[float]:
    """'0.8,0.2' -> [0.8, 0.2]: non-negative finite numbers."""
    items = [x.strip() for x in str(text).split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"{text!r} must be comma-separated numbers, e.g. 0.8,0.2")
    return [cli.non_negative_float(x) for x in items]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check every setting before any work; a bad one ends the program with one line (status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seed is not None:
        parser.refuse("--seed", args.seed, "was renamed", f"use --split_seed {args.seed} (the training seed is set in step 3)")
    if not args.name or any(c in args.name for c in "/\\") or args.name.startswith("."):
        parser.refuse("--name", repr(args.name), "must be a plain file-name part", "e.g. --name finetune")
    if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        parser.refuse("--output_dir", args.output_dir, "is a file, not a directory")
    dirs = args.dataset_dirs
    if not dirs:
        parser.refuse("--dataset_dirs", repr(",".join(dirs)), "names no directory", "e.g. --dataset_dirs data/dataset_contractor")
    if len(set(dirs)) != len(dirs):
        parser.refuse("--dataset_dirs", ",".join(dirs), "names a directory twice")
    if args.type == "neurips":
        if len(dirs) != 1:
            parser.refuse("--dataset_dirs", ",".join(dirs), "--type neurips takes one dataset directory", "use --type mixed with --dataset_weights for several")
        if args.dataset_weights is not None:
            parser.refuse("--dataset_weights", ",".join(map(str, args.dataset_weights)), "is for --type mixed", "leave it out, or use --type mixed")
        args.dataset_weights = [1.0]
    else:
        if args.dataset_weights is None:
            parser.refuse("--dataset_weights", None, "--type mixed needs one weight per dataset directory", "e.g. --dataset_weights 0.8,0.2")
        if len(args.dataset_weights) != len(dirs):
            parser.refuse("--dataset_weights", ",".join(map(str, args.dataset_weights)),
                          f"has {len(args.dataset_weights)} weights for {len(dirs)} dataset directories", "give one per directory")
        if sum(args.dataset_weights) <= 0:
            parser.refuse("--dataset_weights", ",".join(map(str, args.dataset_weights)), "must have a positive sum")
    total = sum(args.dataset_weights)
    args.dataset_weights = [w / total for w in args.dataset_weights]
    for d in dirs:
        try:
            cli.existing_dir("--dataset_dirs", d, "run step 1 (1_generate_dataset.sh) first, or name the folder it wrote")
        except cli.SettingError as e:
            cli.exit_with_refusal(parser.prog, str(e))
        if not find_episode_dirs(d):
            parser.refuse("--dataset_dirs", d, "the folder has no episodes",
                          "convert some into it with step 1 (1_generate_dataset.sh), or name the folder step 1 wrote")
    if args.val_from is not None and not (Path(args.output_dir) / f"{args.val_from}_val.txt").is_file():
        parser.refuse("--val_from", args.val_from, f"{Path(args.output_dir) / (args.val_from + '_val.txt')} not found",
                      "name a sampling that exists in --output_dir")
    return args


# ---------------------------------------------------------------------------------------------
# Episodes and their labelling rules


def list_valid_episodes(dataset_dir: str, min_frames: int, decode_frames: bool, trust_legacy_pickle: bool
                        ) -> tuple[list[Episode], list[str], dict[str, Made]]:
    """Episodes of one dataset directory that validate and are long enough, sorted by name; why others were
    left out; and how each usable episode was made (labelling rules, demo embeddings)."""
    root = Path(dataset_dir)
    episodes, rejected, made = [], [], {}
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
            listed = os.path.join(dataset_dir, path.name)
            episodes.append((listed, result.num_frames))
            made[listed] = how_made(path, result.layout)
    return episodes, rejected, made


def how_made(path: str | os.PathLike, layout: str | None = None) -> Made:
    """(labelling rules, demo embeddings) of an episode, from its metadata.json (data.episode.provenance).

    Labelling rules: (camera labels "truncated"/"float", null filter "env"/"agent"/"none"); older metadata's
    truncate_camera and the original pickle layout (the original rules) are understood; "unknown" where the
    metadata does not say. Demo embeddings: True only when the metadata says random MineCLIP weights.
    """
    provenance = read_provenance(path, layout)
    return (provenance.camera_labels, provenance.null_filter), provenance.mineclip.demo_random_weights is True


def describe_rules(rules: tuple[str, str]) -> str:
    return f"camera_labels={rules[0]}, null_filter={rules[1]}"


def check_demo_embeddings(chosen: list[str], demo: set[str], dataset_dirs: list[str]) -> None:
    """Refuse (cli.SettingError) when a chosen episode's goals were embedded with random MineCLIP weights."""
    found = [path for path in chosen if path in demo]
    if found:
        cli.refuse("--dataset_dirs", ",".join(dataset_dirs),
                   f"{len(found)} of the {len(chosen)} chosen episodes have goal embeddings from random MineCLIP weights "
                   f"(step 1's demo flag), e.g. {found[0]}: their goals mean nothing to train on",
                   "convert them again in step 1 with the real attn.pth (MINECLIP_WEIGHTS, not DEMO_RANDOM_MINECLIP), "
                   "or pass --allow_demo_embeddings (ALLOW_DEMO_EMBEDDINGS=1) for a pipeline demo")


def check_labelling_rules(chosen: list[str], rules: dict[str, tuple[str, str]], dataset_dirs: list[str]) -> None:
    """Refuse (cli.SettingError) when the chosen episodes were labelled with different rules, naming each group."""
    groups: dict[tuple[str, str], list[str]] = {}
    for path in chosen:
        groups.setdefault(rules[path], []).append(path)
    if len(groups) > 1:
        described = "; ".join(f"{len(paths)} with {describe_rules(r)} (e.g. {paths[0]})"
                              for r, paths in sorted(groups.items(), key=lambda item: -len(item[1])))
        cli.refuse("--dataset_dirs", ",".join(dataset_dirs), f"episodes labelled with different rules: {described}",
                   "convert them again with the same --camera_labels and --null_filter, or pass --allow_mixed_labels")


# ---------------------------------------------------------------------------------------------
# The split


@dataclass
class DatasetPart:
    """One dataset directory's share of the sampling."""

    directory: str
    weight: float
    usable: list[Episode]
    rejected: list[str]
    val: list[Episode] = field(default_factory=list)
    pool: list[Episode] = field(default_factory=list)  # usable, not in validation
    train: list[Episode] = field(default_factory=list)


def take_frames(episodes: list[Episode], budget: int) -> tuple[list[Episode], list[Episode]]:
    """Whole episodes from the front until `budget` frames are reached; returns (taken, rest)."""
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
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def training_budgets(parts: list[DatasetPart], train_frames: int) -> list[int]:
    """Frames each dataset trains on, in proportion to the weights; refuses (cli.SettingError) what the data cannot give.

    -1: the largest total whose shares every dataset can give, i.e. min(available_i / weight_i).
    """
    weighted = [p for p in parts if p.weight > 0]
    for p in weighted:
        if total(p.pool) == 0:
            cli.refuse("--val_frames", None, f"{p.directory} has no episode left for training after validation "
                       f"({len(p.val)} episodes, {total(p.val):,} frames, validate)", "lower --val_frames or add episodes")
    if train_frames < 0:
        target = min(total(p.pool) / p.weight for p in weighted)
    else:
        target = train_frames
        short = [p for p in weighted if total(p.pool) < round(target * p.weight)]
        if short:
            can_give = ", ".join(f"{p.directory} can give {total(p.pool):,} of the {round(target * p.weight):,} asked"
                                 for p in weighted)
            largest = int(min(total(p.pool) / p.weight for p in weighted))
            cli.refuse("--train_frames", train_frames, f"is more than the data can give after validation: {can_give}",
                       f"use at most --train_frames {largest} (-1: the most that keeps the weights), lower --val_frames "
                       "or add episodes")
    return [round(target * p.weight) if p.weight > 0 else 0 for p in parts]


def make_sampling(args: argparse.Namespace) -> dict:
    """Split every dataset's valid episodes into train and val; returns the lists and the summary written beside them.

    Raises cli.SettingError (one line) when the data cannot meet the settings.
    """
    min_frames = args.T + EMBED_START
    listed_val = read_list(Path(args.output_dir) / f"{args.val_from}_val.txt") if args.val_from else None
    fixed_val = set(listed_val) if listed_val is not None else None
    parts: list[DatasetPart] = []
    made: dict[str, Made] = {}
    for index, (dataset_dir, weight) in enumerate(zip(args.dataset_dirs, args.dataset_weights)):
        usable, rejected, dataset_made = list_valid_episodes(dataset_dir, min_frames, args.decode_frames, args.trust_legacy_pickle)
        made.update(dataset_made)
        if not usable:
            example = f" (e.g. {rejected[0]})" if rejected else ""
            cli.refuse("--dataset_dirs", dataset_dir, f"has no usable episode of >= {min_frames} frames: "
                       f"{len(rejected)} left out{example}", "fix or convert the episodes again, or lower --T")
        order = np.random.default_rng([args.split_seed, index]).permutation(len(usable))
        part = DatasetPart(dataset_dir, weight, [usable[i] for i in order], rejected)
        if weight == 0:  # contributes nothing, not even validation
            part.pool = list(part.usable)
        elif fixed_val is not None:
            part.val = [e for e in part.usable if e[0] in fixed_val]
            part.pool = [e for e in part.usable if e[0] not in fixed_val]
        else:
            val_budget = round(args.val_frames * weight)
            part.val, part.pool = take_frames(part.usable, val_budget)
            if total(part.val) < val_budget:
                cli.refuse("--val_frames", args.val_frames,
                           f"{dataset_dir} has {total(part.usable):,} frames in {len(part.usable)} usable episodes "
                           f"(>= {min_frames} frames each); validation alone needs {val_budget:,}",
                           "lower --val_frames or add episodes")
        parts.append(part)

    for part, budget in zip(parts, training_budgets(parts, args.train_frames)):
        part.train, _ = take_frames(part.pool, budget) if budget > 0 else ([], part.pool)

    train = [e for p in parts for e in p.train]
    val = [e for p in parts for e in p.val]
    if fixed_val is not None:
        # Exactly as listed (same order: validation samples and their seeded goals depend on it),
        # even episodes from other datasets.
        val = [(path, 0) for path in listed_val]
        made.update({path: how_made(path) for path in listed_val if path not in made})
    chosen = [path for path, _ in train + val]
    rules = {path: made[path][0] for path in chosen}
    demo = {path for path in chosen if made[path][1]}
    if not args.allow_demo_embeddings:
        check_demo_embeddings(chosen, demo, args.dataset_dirs)
    if not args.allow_mixed_labels:
        check_labelling_rules(chosen, rules, args.dataset_dirs)

    train_total = total(train)
    summary = {
        "name": args.name, "type": args.type, "split_seed": args.split_seed, "T": args.T, "datasets": {},
        "labelling_rules": dict(Counter(describe_rules(rules[path]) for path in chosen)),
        "demo_embedding_episodes": len(demo),
    }
    for part in parts:
        summary["datasets"][part.directory] = {
            "weight": part.weight, "train_episodes": len(part.train), "train_frames": total(part.train),
            "train_fraction": total(part.train) / train_total if train_total else 0.0,
            "val_episodes": len(part.val), "val_frames": total(part.val), "left_out": part.rejected,
        }
    summary.update(train_episodes=len(train), train_frames=train_total, val_episodes=len(val),
                   val_frames=total(val) if fixed_val is None else None)
    return {"train": [p for p, _ in train], "val": [p for p, _ in val], "summary": summary}


def _list_text(paths: list[str]) -> str:
    return "".join(p + "\n" for p in paths)


def sampling_already_written(result: dict, output_dir: str, name: str, overwrite: bool) -> bool:
    """True when <name>_train.txt and _val.txt already hold exactly these lists (a re-run: nothing to write).

    Refuses (cli.SettingError) when either exists with other content and `overwrite` is off: a training run
    may read them (and resume from them), so a changed split must not replace them silently.
    """
    out = Path(output_dir)
    lists = {out / f"{name}_train.txt": _list_text(result["train"]), out / f"{name}_val.txt": _list_text(result["val"])}
    existing = [path for path in lists if path.exists() or path.is_symlink()]
    if not existing:
        return False
    for path in existing:
        if not path.is_file():
            cli.refuse("--name", name, f"{path} is not a file", "move it away, or choose another --name")
    if len(existing) == len(lists) and all(path.read_bytes() == text.encode() for path, text in lists.items()):
        return True
    if not overwrite:
        cli.refuse("--name", name, f"{' and '.join(map(str, existing))} already hold{'s' if len(existing) == 1 else ''} "
                   "a different sampling", "choose another --name (NAME in 2_create_sampling.sh), or replace it with "
                   "--overwrite (OVERWRITE=1)")
    return False


def write_sampling(result: dict, output_dir: str, name: str) -> list[Path]:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{name}_train.txt", out / f"{name}_val.txt", out / f"{name}_summary.json"]
    files[0].write_text(_list_text(result["train"]))
    files[1].write_text(_list_text(result["val"]))
    files[2].write_text(json.dumps(result["summary"], indent=2) + "\n")
    return files


def print_summary(summary: dict) -> None:
    for dataset_dir, d in summary["datasets"].items():
        print(f"{dataset_dir}: train {d['train_episodes']} episodes / {d['train_frames']:,} frames "
              f"({d['train_fraction']:.1%} of training, weight {d['weight']:.1%}), "
              f"val {d['val_episodes']} episodes / {d['val_frames']:,} frames, left out {len(d['left_out'])}")
        for line in d["left_out"][:10]:
            print(f"  left out {line}")
    print(f"Total: train {summary['train_episodes']} episodes / {summary['train_frames']:,} frames; "
          f"val {summary['val_episodes']} episodes")
    print("Labelling rules: " + "; ".join(f"{n} episodes {rules}" for rules, n in summary["labelling_rules"].items()))
    if summary["demo_embedding_episodes"]:
        print(f"WARNING: {summary['demo_embedding_episodes']} episodes have goal embeddings from random MineCLIP weights "
              "(--allow_demo_embeddings): a pipeline demo, not data to train an agent on")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def run() -> int:
        result = make_sampling(args)
        if sampling_already_written(result, args.output_dir, args.name, args.overwrite):
            print_summary(result["summary"])
            print(f"Unchanged: {Path(args.output_dir) / args.name}_train.txt and _val.txt already hold these lists; "
                  "nothing written")
            return 0
        files = write_sampling(result, args.output_dir, args.name)
        print_summary(result["summary"])
        print("Wrote " + ", ".join(str(f) for f in files))
        return 0

    return cli.run_main(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
