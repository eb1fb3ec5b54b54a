"""Offline evaluation (no Minecraft): how well do weights predict the recorded actions of held-out episodes?

    .venv/bin/python training/evaluate_offline.py --in_model data/weights/vpt/2x.model \\
        --weights data/weights/steve1/steve1.weights data/weights/steve1/my_task_best.weights \\
        --sampling my_task --T 320 --trunc_t 64 --tensorboard_dir data/finetuning_checkpoint/my_task/logs

Prints, per weights file, `loss/val` and `loss/val_uncond` exactly as training/train.py computes them
(training/validation.py: the same samples, the same goals, which depend only on the validation episodes;
pass the run's --T, --trunc_t, --min_btwn_goals, --max_btwn_goals and --val_every_nth), the negative
log-likelihood per frame, and how often the most likely joint button / camera action is the recorded one.
With --plot_dir it draws those numbers per weights file to <plot_dir>/evaluation.png; with --tensorboard_dir
it also draws the run's loss curves to <plot_dir>/training_curves.png (the current folder without --plot_dir).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from accelerate import Accelerator

from data.episode import EMBED_START
from data.minecraft_dataset import MinecraftDataset, read_sampling_file
from embed_conditioned_policy import SteveAgentPolicy
from toolkit_utils import cli
from training.checks import check_goal_gaps, check_policy_files, check_sampling, check_windows, check_writable_folder
from training.device import PRECISIONS, choose_precision
from training.validation import ValidationResult, validate
from vpt_model.model_files import load_policy_weights

PROGRAM = "training/evaluate_offline.py"
CURVE_TAGS = ("loss/train", "loss/val", "loss/val_uncond")
MARKED_TRAIN_POINTS = 50  # a training curve with at most this many points shows each one (a short run)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    a = p.add_argument
    a("--in_model", default="data/weights/vpt/2x.model", help=".model file or preset (tiny, 2x, ...)")
    a("--weights", nargs="+", required=True, help="weights files to compare")
    a("--sampling", default="finetune", help="sampling name: reads <sampling_dir>/<sampling>_<split>.txt")
    a("--sampling_dir", default="data/samplings", help="directory of the sampling files")
    a("--split", default="val", choices=["train", "val"], help="which episodes to evaluate on")
    a("--T", type=cli.int_range(1), default=320, help="frames per sample (as the run's --T)")
    a("--trunc_t", type=cli.int_range(1), default=64, help="frames per window (as the run's --trunc_t)")
    a("--min_btwn_goals", type=cli.int_range(EMBED_START), default=15, help="as the run's --min_btwn_goals")
    a("--max_btwn_goals", type=cli.int_range(EMBED_START + 1), default=200, help="as the run's --max_btwn_goals")
    a("--val_every_nth", type=cli.int_range(1), default=1, help="every n-th sample (as the run's --val_every_nth)")
    a("--batch_size", type=cli.int_range(1), default=8, help="samples per forward")
    a("--num_workers", type=cli.int_range(0), default=0, help="DataLoader worker processes")
    a("--trust_legacy_pickle", action="store_true", help="allow episodes in the original STEVE-1 pickle layout")
    a("--mixed_precision", choices=PRECISIONS, default="auto", help="bf16 autocast or fp32 ('no'); auto: bf16 on a GPU that has it, else fp32")
    a("--cpu", action="store_true", help="use the CPU even when a GPU is present")
    a("--tensorboard_dir", default=None, help="a training run's TensorBoard directory (<checkpoint_dir>/logs): plot its curves")
    a("--plot_dir", default=None, help="draw evaluation.png (the numbers above per weights file) here, and training_curves.png with --tensorboard_dir (which alone draws its curves to the current folder)")
    return p.parse_args(argv)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    _pyplot().close(fig)
    return out_png


def draw_loss_curves(ax: Any, series: dict[str, list[tuple[int, float]]]) -> list[Any]:
    """Draw each tag's (step, value) points on `ax`; returns the lines.

    Validation points are always marked, and so are the training points of a short run: a line through one
    point (the first validation of a run) draws nothing.
    """
    lines = []
    for tag, points in series.items():
        marked = tag != "loss/train" or len(points) <= MARKED_TRAIN_POINTS
        lines += ax.plot([step for step, _ in points], [value for _, value in points], marker="o" if marked else None,
                         markersize=4 if tag == "loss/train" else 6, label=tag)
    return lines


def plot_training_curves(tensorboard_dir: str | Path, out_png: str | Path) -> Path:
    """loss/train, loss/val and loss/val_uncond against the optimizer step, from a run's TensorBoard events, as a PNG."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tensorboard_dir))  # applies purge_step: a resumed run's curves stay monotone
    events.Reload()
    tags = set(events.Tags()["scalars"])
    series = {tag: [(p.step, p.value) for p in events.Scalars(tag)] for tag in CURVE_TAGS if tag in tags}
    fig, ax = _pyplot().subplots(figsize=(7, 4))
    draw_loss_curves(ax, series)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (NLL summed over a trunc_t window)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, out_png)


def plot_evaluation(results: Sequence[tuple[str, ValidationResult]], out_png: str | Path) -> Path:
    """The evaluated weights side by side: loss/val and loss/val_uncond, and the button / camera accuracy, as a PNG."""
    names = [Path(path).name for path, _ in results]
    x = np.arange(len(results))
    fig, (losses, accuracy) = _pyplot().subplots(1, 2, figsize=(max(7, 2.2 * len(results)), 4))
    for offset, label, values in ((-0.2, "loss/val", [r.loss for _, r in results]),
                                  (0.2, "loss/val_uncond", [r.loss_uncond for _, r in results])):
        losses.bar(x + offset, values, width=0.4, label=label)
    for offset, label, values in ((-0.2, "buttons", [r.button_accuracy for _, r in results]),
                                  (0.2, "camera", [r.camera_accuracy for _, r in results])):
        accuracy.bar(x + offset, values, width=0.4, label=label)
    losses.set_ylabel("loss (NLL summed over a trunc_t window)")
    accuracy.set_ylabel("most likely action = recorded action")
    accuracy.set_ylim(0, 1)
    for ax in (losses, accuracy):
        ax.set_xticks(x, names, rotation=20, ha="right")
        ax.legend()
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, out_png)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run_main(PROGRAM, lambda: evaluate(args))


def evaluate(args: argparse.Namespace) -> int:
    check_windows(args.T, args.trunc_t)
    check_goal_gaps(args.min_btwn_goals, args.max_btwn_goals)
    check_sampling(args.sampling_dir, args.sampling, [args.split])
    config = check_policy_files(args.in_model, args.weights, setting="--weights")
    if args.tensorboard_dir is not None:
        cli.existing_dir("--tensorboard_dir", args.tensorboard_dir, "pass a run's <checkpoint_dir>/logs")
        if args.plot_dir is None:
            args.plot_dir = "."
    if args.plot_dir is not None:
        check_writable_folder("--plot_dir", args.plot_dir, args.plot_dir, "choose a folder you can write (it is created "
                              "when missing)")
    episodes = read_sampling_file(Path(args.sampling_dir) / f"{args.sampling}_{args.split}.txt")
    try:
        dataset = MinecraftDataset(episodes, args.T, args.min_btwn_goals, args.max_btwn_goals, p_uncond=0.0, train=False,
                                   trust_legacy_pickle=args.trust_legacy_pickle)
    except (OSError, ValueError) as e:
        cli.refuse("--sampling", args.sampling, " ".join(str(e).split()), "fix or remove the episode, or pass the run's --T")
    precision, _, _ = choose_precision(args.mixed_precision, "no", args.cpu)
    accelerator = Accelerator(cpu=args.cpu, mixed_precision=precision)

    indices = range(0, len(dataset), args.val_every_nth)
    majority = np.bincount(np.concatenate([dataset.recorded_actions(i)[0] for i in indices])).max() / (len(indices) * args.T)
    print(f"{args.split} set: {len(indices)} samples of {args.T} frames in windows of {args.trunc_t} "
          f"({'fp32' if precision == 'no' else precision}, {accelerator.device})")
    print(f"{'weights':60s} {'loss/val':>10s} {'val_uncond':>10s} {'NLL/frame':>10s} {'buttons acc':>12s} {'camera acc':>11s}")
    results = []
    for path in args.weights:
        policy = SteveAgentPolicy(config)
        load_policy_weights(policy, path, verbose=False)
        result = validate(policy.to(accelerator.device), dataset, args.trunc_t, args.batch_size, args.val_every_nth,
                          args.num_workers, accelerator)
        for line in result.skipped:
            print(f"  skipped (unreadable): {line}")
        print(f"{str(path):60s} {result.loss:10.4f} {result.loss_uncond:10.4f} {result.loss / args.trunc_t:10.4f} "
              f"{result.button_accuracy:12.3f} {result.camera_accuracy:11.3f}")
        results.append((path, result))
    print(f"(always predicting the most common button combination would score {majority:.3f})")
    if args.plot_dir is not None:
        print(f"Evaluation plot: {plot_evaluation(results, Path(args.plot_dir) / 'evaluation.png')}")
    if args.tensorboard_dir:
        print(f"Training curves: {plot_training_curves(args.tensorboard_dir, Path(args.plot_dir) / 'training_curves.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
