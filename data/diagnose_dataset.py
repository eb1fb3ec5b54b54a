"""Data diagnostic: look at the first batches of a sampling the way training will see them.

    .venv/bin/python data/diagnose_dataset.py --sampling finetune --sampling_dir data/samplings --T 320

Prints obs keys, image shape and value range, embedding shape and mean norm, action histograms.
Exits with status 1 when something is off: all-zero images, NaN/inf embeddings, all-zero goal embeddings,
constant actions, or episodes it cannot read; 2 (one line) for a setting that cannot work, a --T longer than
the sampling's episodes included.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from data.minecraft_dataset import EpisodesTooShortError, MinecraftDataset, read_sampling_file
from toolkit_utils import cli
from vpt_model.action_space import FACTORED_BUTTONS, NULL_CAMERA_INDEX, joint_to_factored


PROG = "diagnose_dataset.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the settings before any work; a bad one ends the program with one line (status 2)."""
    p = cli.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--sampling", default="finetune", help="sampling name (<sampling_dir>/<sampling>_train.txt)")
    p.add_argument("--sampling_dir", default="data/samplings", help="directory of the sampling files")
    p.add_argument("--split", default="train", choices=["train", "val"], help="which list to inspect")
    p.add_argument("--T", type=cli.positive_int, default=320, help="frames per sample (as in training)")
    p.add_argument("--batch_size", type=cli.positive_int, default=4, help="samples per batch")
    p.add_argument("--num_batches", type=cli.positive_int, default=3, help="batches to inspect")
    p.add_argument("--p_uncond", type=cli.probability, default=0.1, help="as in training (zero-goal samples are expected at this rate)")
    p.add_argument("--min_btwn_goals", type=cli.positive_int, default=15, help="as in training")
    p.add_argument("--max_btwn_goals", type=cli.positive_int, default=200, help="as in training")
    p.add_argument("--trust_legacy_pickle", action="store_true", help="allow episodes in the original pickle layout")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="which samples to draw")
    args = p.parse_args(argv)
    if args.max_btwn_goals <= args.min_btwn_goals:
        p.refuse("--max_btwn_goals", args.max_btwn_goals, f"must be larger than --min_btwn_goals {args.min_btwn_goals}")
    args.listing = Path(args.sampling_dir) / f"{args.sampling}_{args.split}.txt"
    if not args.listing.is_file():
        p.refuse("--sampling", args.sampling, f"{args.listing} not found", "run 2_create_sampling.sh (or check --sampling_dir)")
    return args


def diagnose(batches: list[dict[str, np.ndarray]]) -> list[str]:
    """Print what the batches hold; return the problems found (empty: looks fine)."""
    problems = []
    first = batches[0]
    print(f"obs keys: {sorted(k for k in first if k in ('img', 'mineclip_embed'))}; action keys: ['buttons', 'camera']; also: firsts")
    img = np.concatenate([b["img"] for b in batches])
    embeds = np.concatenate([b["mineclip_embed"] for b in batches])
    buttons = np.concatenate([b["buttons"] for b in batches]).reshape(-1)
    camera = np.concatenate([b["camera"] for b in batches]).reshape(-1)
    print(f"img: shape {tuple(first['img'].shape)} (per batch) dtype {first['img'].dtype}, values {img.min()}..{img.max()}, mean {img.mean():.1f}")
    norms = np.linalg.norm(embeds.reshape(-1, embeds.shape[-1]), axis=-1)
    zero_samples = int((np.abs(embeds).reshape(embeds.shape[0], -1).max(axis=1) == 0).sum())
    print(f"mineclip_embed: shape {tuple(first['mineclip_embed'].shape)}, mean norm {np.nanmean(norms):.4f}, "
          f"unconditional (all-zero) samples {zero_samples}/{embeds.shape[0]}")
    if img.max() == 0:
        problems.append("all images are zero (black frames): check the videos with EpisodeStorage.py --validate")
    if not np.isfinite(embeds).all():
        problems.append("NaN or inf in goal embeddings: episodes were written with missing embeddings")
    elif zero_samples == embeds.shape[0]:
        problems.append("every goal embedding is zero: the conversion stored no MineCLIP embeddings, or p_uncond is 1")
    factored, camera_bins = joint_to_factored(buttons, camera)
    counts = factored.sum(axis=0)
    print("buttons pressed (frames):", ", ".join(f"{name} {int(c)}" for name, c in zip(FACTORED_BUTTONS, counts) if c) or "none")
    top = Counter(buttons.tolist()).most_common(5)
    print("most common joint button indices:", ", ".join(f"{k}: {v}" for k, v in top))
    moving = int((camera != NULL_CAMERA_INDEX).sum())
    print(f"camera: moving in {moving}/{camera.size} frames; pitch bins {np.bincount(camera_bins[:, 0], minlength=11).tolist()}, "
          f"yaw bins {np.bincount(camera_bins[:, 1], minlength=11).tolist()}")
    if len(set(buttons.tolist())) == 1 and len(set(camera.tolist())) == 1:
        problems.append(f"actions are constant (buttons {buttons[0]}, camera {camera[0]}): the action conversion is broken")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    listing = args.listing
    try:
        dataset = MinecraftDataset(
            read_sampling_file(listing), args.T, args.min_btwn_goals, args.max_btwn_goals, args.p_uncond,
            seed=args.seed, train=args.split == "train", trust_legacy_pickle=args.trust_legacy_pickle,
        )
        order = np.random.default_rng(args.seed).permutation(len(dataset))
        keys = [(0, int(i)) for i in order[: args.batch_size * args.num_batches]]
        samples = [dataset[k] for k in keys]
        batches = [_stack(samples[i : i + args.batch_size]) for i in range(0, len(samples), args.batch_size)]
    except EpisodesTooShortError as e:  # a setting mistake, not broken data
        cli.exit_with_refusal(PROG, f"--T {e.T}: {e.problem()}; use the T the sampling was made with "
                              "(2_create_sampling.sh's T), or create the sampling again with this T")
    except (OSError, ValueError) as e:
        print(f"FAIL: {e}")
        return 1
    print(f"{listing}: {len(dataset):,} samples of {args.T} frames; inspecting {len(keys)}")
    problems = diagnose(batches)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("OK: nothing looks wrong" if not problems else f"{len(problems)} problem(s) found")
    return 1 if problems else 0


def _stack(samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}


if __name__ == "__main__":
    sys.exit(main())
