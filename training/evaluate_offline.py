"""Offline evaluation (no Minecraft): how well do weights predict the recorded actions of held-out episodes?

    python training/evaluate_offline.py --in_model data/weights/vpt/2x.model \
        --weights data/weights/steve1/steve1.weights data/weights/steve1/my_task_best.weights \
        --sampling finetune --T 320 --plot_dir data/finetuning_checkpoint

Prints, per weights file: negative log-likelihood per frame and how often the most likely joint button /
camera action equals the recorded one. With --tensorboard_dir it also draws the training curves to a PNG.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from data.minecraft_dataset import MinecraftDataset, read_sampling_file
from embed_conditioned_policy import SteveAgentPolicy
from vpt_model.action_head import action_log_prob
from vpt_model.model_files import load_policy_config, load_policy_weights


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in_model", default="data/weights/vpt/2x.model", help=".model file or preset (tiny, 2x, ...)")
    p.add_argument("--weights", nargs="+", required=True, help="weights files to compare")
    p.add_argument("--sampling", default="finetune", help="sampling name")
    p.add_argument("--sampling_dir", default="data/samplings", help="directory of the sampling files")
    p.add_argument("--split", default="val", choices=["train", "val"], help="which episodes to evaluate on")
    p.add_argument("--T", type=int, default=320, help="frames per sample")
    p.add_argument("--max_samples", type=int, default=64, help="samples to evaluate (deterministic goals)")
    p.add_argument("--device", default=None, help="cuda or cpu")
    p.add_argument("--tensorboard_dir", default=None, help="a training run's TensorBoard directory: plot its curves")
    p.add_argument("--plot_dir", default=".", help="where training_curves.png goes")
    return p.parse_args(argv)


@torch.no_grad()
def evaluate(policy: SteveAgentPolicy, dataset: MinecraftDataset, max_samples: int, device: str) -> dict[str, float]:
    """NLL per frame and argmax accuracy of buttons and camera over the first samples of a dataset."""
    policy.to(device).eval()
    nll, button_hits, camera_hits, frames = 0.0, 0, 0, 0
    for index in range(min(max_samples, len(dataset))):
        sample = {k: torch.from_numpy(v)[None].to(device) for k, v in dataset[index].items()}
        obs = {"img": sample["img"], "mineclip_embed": sample["mineclip_embed"]}
        pd, _, _ = policy(obs, sample["firsts"], policy.initial_state(1, device))
        nll -= action_log_prob(pd, {"buttons": sample["buttons"], "camera": sample["camera"]}).sum().item()
        button_hits += (pd["buttons"].argmax(-1) == sample["buttons"]).sum().item()
        camera_hits += (pd["camera"].argmax(-1) == sample["camera"]).sum().item()
        frames += sample["buttons"].numel()
    return {"nll_per_frame": nll / frames, "button_accuracy": button_hits / frames,
            "camera_accuracy": camera_hits / frames, "frames": frames}


def plot_training_curves(tensorboard_dir: str | Path, out_png: str | Path) -> Path:
    """loss/train and loss/val against processed frames, from a run's TensorBoard events, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tensorboard_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for tag in ("loss/train", "loss/val"):
        if tag in tags:
            points = events.Scalars(tag)
            ax.plot([p.step for p in points], [p.value for p in points], marker="o" if tag == "loss/val" else None, label=tag)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (NLL summed over a trunc_t window)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    episodes = read_sampling_file(Path(args.sampling_dir) / f"{args.sampling}_{args.split}.txt")
    dataset = MinecraftDataset(episodes, args.T, p_uncond=0.0, train=False)
    config = load_policy_config(args.in_model)
    majority = np.bincount(np.concatenate([dataset[i]["buttons"] for i in range(min(args.max_samples, len(dataset)))])).max()
    print(f"{args.split} set: {len(dataset)} samples of {args.T} frames; evaluating up to {args.max_samples}")
    print(f"{'weights':60s} {'NLL/frame':>10s} {'buttons acc':>12s} {'camera acc':>11s}")
    for path in args.weights:
        policy = SteveAgentPolicy(config)
        load_policy_weights(policy, path)
        result = evaluate(policy, dataset, args.max_samples, device)
        print(f"{str(path):60s} {result['nll_per_frame']:10.4f} {result['button_accuracy']:12.3f} {result['camera_accuracy']:11.3f}")
    frames = min(args.max_samples, len(dataset)) * args.T
    print(f"(always predicting the most common button combination would score {majority / frames:.3f})")
    if args.tensorboard_dir:
        print(f"Training curves: {plot_training_curves(args.tensorboard_dir, Path(args.plot_dir) / 'training_curves.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
