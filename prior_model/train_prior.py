"""Train (or fine-tune) the STEVE-1 prior on (text embedding, visual embedding) pairs; step 4 of the guide.

Reproduces the original train_vae.py: AdamW, batch 256, lr 1e-4, 50 epochs, beta 1, loss = beta * KL
(summed over the batch) + MSE (mean), best-on-validation weights saved as a plain state dict (the
steve1_prior.pt format). Differences on purpose: a seeded split and a seeded validation noise (the
original's validation loss was random), fp32 instead of fp16 autocast, TensorBoard logging, a NaN stop,
atomic checkpoint writes, and a pickle-free dataset format. When fine-tuning (--in_weights), the input
prior is the best until an epoch beats its validation loss, so the output is never worse than the input.
An existing --output_path (or --convert_only's .npz) is kept unless --overwrite; --in_weights is never replaced.

    .venv/bin/python prior_model/train_prior.py --data_path data/prior_dataset/data.npz
    .venv/bin/python prior_model/train_prior.py --data_path data/prior_dataset/data.pkl --trust_pickle --convert_only
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from prior_model.prior import GoalPrior, PriorConfig, load_prior, save_prior
from prior_model.prior_dataset import (
    PriorPairs,
    UntrustedPickleError,
    is_pickle_path,
    load_npz_pairs,
    load_pairs,
    save_npz_pairs,
    split_indices,
)
from toolkit_utils import cli
from toolkit_utils.progress import progress_bar
from toolkit_utils.state_dicts import StateDictMismatchError
from training.metrics import MetricsLogger, hparams_markdown

PROGRAM = "prior_model/train_prior.py"
DEFAULT_DATA_PATH = "data/prior_dataset/data.npz"
DEFAULT_OUTPUT_PATH = "data/weights/steve1/steve1_prior_finetuned.pt"  # never the user's steve1_prior.pt
DEFAULT_LOG_ROOT = "logs/prior"
# The one-time conversion of the original pairs, as a user runs it from the repo root
CONVERT_COMMAND = ".venv/bin/python prior_model/train_prior.py --data_path {pkl} --trust_pickle --convert_only"
TEXT_LOG_NAME = "train_prior.log"  # beside the TensorBoard events of the run
VAL_NOISE_SEED_OFFSET = 1  # validation draws its own fixed noise, independent of the training stream


def build_parser() -> cli.ArgumentParser:
    """Command-line arguments; names follow the original train_vae.py where it had one."""
    p = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    p.add_argument("--data_path", default=DEFAULT_DATA_PATH,
                   help="pairs to train on: our .npz (text_embeds, visual_embeds [N,512] float32, optional texts) "
                        "or the original data.pkl (needs --trust_pickle)")
    p.add_argument("--trust_pickle", action="store_true",
                   help="allow reading a .pkl dataset; unpickling can run arbitrary code, so only for files you trust")
    p.add_argument("--convert_only", action="store_true",
                   help="only convert --data_path to our .npz format (written to --npz_path) and exit")
    p.add_argument("--npz_path", default=None,
                   help="where --convert_only writes the .npz (default: --data_path with the suffix .npz)")
    p.add_argument("--output_path", default=DEFAULT_OUTPUT_PATH,
                   help="where the best-on-validation prior is written, as a plain state dict like steve1_prior.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --output_path (or --convert_only's .npz); default: refuse, keeping it")
    p.add_argument("--in_weights", default=None,
                   help="start from this prior (e.g. data/weights/steve1/steve1_prior.pt); its sizes override "
                        "--hidden_dim/--latent_dim, and it stays the best until an epoch beats it on validation. "
                        "Default: train from scratch, as the original did")
    p.add_argument("--hidden_dim", type=cli.int_range(1), default=512, help="width of the prior's hidden layers (STEVE-1: 512)")
    p.add_argument("--latent_dim", type=cli.int_range(1), default=512, help="size of the latent z (STEVE-1: 512)")
    p.add_argument("--batch_size", type=cli.int_range(1), default=256, help="pairs per optimizer step")
    p.add_argument("--lr", type=cli.positive_float, default=1e-4, help="AdamW learning rate (constant, as in the original)")
    p.add_argument("--weight_decay", type=cli.non_negative_float, default=0.01,
                   help="AdamW weight decay (0.01 is torch's default, which the original used)")
    p.add_argument("--n_validation", type=cli.int_range(1), default=200, help="pairs held out for validation")
    p.add_argument("--n_epochs", type=cli.int_range(1), default=50, help="passes over the training pairs")
    p.add_argument("--beta", type=cli.non_negative_float, default=1.0, help="weight of the KL term in the loss")
    p.add_argument("--seed", type=cli.int_range(0), default=0, help="seed of the train/val split, the initialisation and the noise")
    p.add_argument("--device", default="auto", help="torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1...")
    p.add_argument("--log_dir", default=None,
                   help=f"TensorBoard directory, also holding the text log {TEXT_LOG_NAME} "
                        f"(default: {DEFAULT_LOG_ROOT}/run_<YYYYmmdd-HHMMSS>)")
    return p


@dataclass
class TrainResult:
    """What a finished run produced."""

    best_val_loss: float
    best_epoch: int  # -1: no epoch beat the starting prior (--in_weights), which was kept
    output_path: Path
    log_dir: Path


def fail(message: str) -> NoReturn:
    """Stop a run that went wrong after it started (exit status 1), with a message that says what to do."""
    raise SystemExit(f"error: {message}")


def resolve_device(name: str) -> torch.device:
    """The torch device for --device, checked before any work starts."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        cli.refuse("--device", name, "is not a torch device", "use auto, cpu, cuda or cuda:<index>")
    if device.type == "cuda" and not torch.cuda.is_available():
        cli.refuse("--device", name, "CUDA is not available on this machine", "use --device cpu (or auto)")
    return device


def read_dataset(args: argparse.Namespace) -> PriorPairs:
    """Load --data_path, turning the known problems into one-line refusals that name the fix."""
    path = Path(args.data_path)
    if not path.exists():
        pkl = path.with_suffix(".pkl")
        fix = ("for the original pairs run WITH_PRIOR_DATASET=1 bash download_weights.sh (it writes "
               "data/prior_dataset/data.pkl), then convert them once: "
               + CONVERT_COMMAND.format(pkl="data/prior_dataset/data.pkl"))
        if not is_pickle_path(path) and pkl.exists():
            fix = f"the original {pkl} is there: convert it once with " + CONVERT_COMMAND.format(pkl=pkl)
        cli.refuse("--data_path", path, "not found", fix)
    try:
        pairs = load_pairs(path, trust_pickle=args.trust_pickle)
    except UntrustedPickleError:
        cli.refuse("--data_path", path, "is a Python pickle (the original data.pkl); loading one can run arbitrary code",
                   "add --trust_pickle if it comes from a source you trust, best with --convert_only to write a "
                   "pickle-free .npz once and train from that")
    except (ValueError, OSError) as e:
        cli.refuse("--data_path", path, f"cannot be read ({' '.join(str(e).split())})",
                   "pass an .npz with text_embeds and visual_embeds, or the original data.pkl with --trust_pickle")
    bad = ~(np.isfinite(pairs.text_embeds).all(1) & np.isfinite(pairs.visual_embeds).all(1))
    if bad.any():
        cli.refuse("--data_path", path, f"has non-finite embeddings in {int(bad.sum())} pairs (first: row {int(np.argmax(bad))})",
                   "remove them before training")
    return pairs


def _same_file(a: Path, b: str | Path) -> bool:
    return os.path.samefile(a, b) if a.exists() and Path(b).exists() else a.resolve() == Path(b).resolve()


def check_output(args: argparse.Namespace) -> Path:
    """--output_path, refused (SettingError) where training would destroy something: the --in_weights it starts
    from (always), a folder, or an existing file without --overwrite (a prior trained earlier)."""
    path = Path(args.output_path)
    if args.in_weights and _same_file(path, args.in_weights):
        cli.refuse("--output_path", path, "is --in_weights; training would replace the prior it starts from",
                   "choose another --output_path (OUTPUT_PATH in 4_train_prior.sh)")
    if path.is_dir():
        cli.refuse("--output_path", path, "is a folder", "name the .pt file to write")
    if path.exists() and not args.overwrite:
        cli.refuse("--output_path", path, "already exists (a prior trained earlier)",
                   "choose another --output_path (OUTPUT_PATH in 4_train_prior.sh), or replace it with --overwrite "
                   "(OVERWRITE=1)")
    return path


def evaluate(model: GoalPrior, text: torch.Tensor, visual: torch.Tensor, batch_size: int, beta: float,
             seed: int) -> tuple[float, float, float]:
    """Mean (total, recon, kl) over validation batches, with the same noise every call so epochs compare."""
    model.eval()
    generator = torch.Generator(device=text.device).manual_seed(seed)
    sums = np.zeros(3)
    n_batches = 0
    with torch.no_grad():
        for start in range(0, len(text), batch_size):
            losses = model.loss(visual[start:start + batch_size], text[start:start + batch_size], beta, generator)
            sums += [x.item() for x in losses]
            n_batches += 1
    model.train()
    total, recon, kl = sums / n_batches
    return float(total), float(recon), float(kl)


def load_start(args: argparse.Namespace, embed_dim: int) -> GoalPrior:
    """The prior to train: --in_weights (checked) or a fresh one of the given sizes."""
    if not args.in_weights:
        return GoalPrior(PriorConfig(embed_dim=embed_dim, hidden_dim=args.hidden_dim, latent_dim=args.latent_dim))
    cli.existing_file("--in_weights", args.in_weights, "download_weights.sh puts steve1_prior.pt in data/weights/steve1/")
    try:
        model = load_prior(args.in_weights, device="cpu")
    except (StateDictMismatchError, ValueError) as e:
        cli.refuse("--in_weights", args.in_weights, " ".join(str(e).split()), "pass a prior state dict like steve1_prior.pt")
    if model.config.embed_dim != embed_dim:
        cli.refuse("--in_weights", args.in_weights, f"has embed_dim {model.config.embed_dim} but the dataset's embeddings "
                   f"have {embed_dim}", "use a prior trained on embeddings of the same size")
    return model


def train(args: argparse.Namespace) -> TrainResult:
    """Run the whole training; every check that can fail runs before anything is written."""
    output_path = check_output(args)
    device = resolve_device(args.device)
    pairs = read_dataset(args)
    try:
        train_idx, val_idx = split_indices(len(pairs), args.n_validation, args.seed)
    except ValueError:
        cli.refuse("--n_validation", args.n_validation, f"must be between 1 and {len(pairs) - 1} for the {len(pairs)} pairs "
                   f"of {args.data_path}", "lower --n_validation")
    torch.manual_seed(args.seed)
    model = load_start(args, pairs.embed_dim).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    text_all = torch.from_numpy(pairs.text_embeds)
    visual_all = torch.from_numpy(pairs.visual_embeds)
    train_text, train_visual = text_all[train_idx].to(device), visual_all[train_idx].to(device)
    val_text, val_visual = text_all[val_idx].to(device), visual_all[val_idx].to(device)

    steps_per_epoch = math.ceil(len(train_idx) / args.batch_size)
    log_dir = Path(args.log_dir or f"{DEFAULT_LOG_ROOT}/run_{time.strftime('%Y%m%d-%H%M%S')}")
    settings = {**vars(args), "device": str(device), "log_dir": str(log_dir), "model_config": str(model.config),
                "n_pairs": len(pairs), "n_train": len(train_idx), "n_val": len(val_idx),
                "steps_per_epoch": steps_per_epoch, "total_steps": steps_per_epoch * args.n_epochs}
    log = MetricsLogger(log_dir, log_dir / TEXT_LOG_NAME)
    try:
        log.info("Prior training settings:\n" + "\n".join(f"  {k}: {v}" for k, v in settings.items()))
        log.text("hparams", hparams_markdown(settings))
        best_val_loss, best_epoch = _train_epochs(args, model, optimizer, (train_text, train_visual),
                                                  (val_text, val_visual), output_path, log)
        log.info(f"Best validation loss {best_val_loss:.4f} "
                 + (f"at epoch {best_epoch}" if best_epoch >= 0 else "of the starting prior (no epoch beat it)")
                 + f"; prior written to {output_path}")
    finally:
        log.close()
    return TrainResult(best_val_loss, best_epoch, output_path, log_dir)


def _train_epochs(args: argparse.Namespace, model: GoalPrior, optimizer: torch.optim.Optimizer,
                  train_pairs: tuple[torch.Tensor, torch.Tensor], val_pairs: tuple[torch.Tensor, torch.Tensor],
                  output_path: Path, log: MetricsLogger) -> tuple[float, int]:
    """The epochs: train, validate, keep the best; returns (best validation loss, its epoch or -1 for the input)."""
    (train_text, train_visual), (val_text, val_visual) = train_pairs, val_pairs
    val_seed = args.seed + VAL_NOISE_SEED_OFFSET
    val_loss, val_recon, val_kl = evaluate(model, val_text, val_visual, args.batch_size, args.beta, val_seed)
    log.info(f"Initial validation loss: {val_loss:.4f} (recon {val_recon:.4f}, kl {val_kl:.4f})")
    log.scalars(0, {"loss/val": val_loss})
    best_val_loss, best_epoch = math.inf, -1
    if args.in_weights:  # the input is the prior to beat: never write one worse than it
        best_val_loss = val_loss
        save_prior(model, output_path)
        log.info(f"The starting prior is the best so far: written to {output_path}")

    shuffle_gen = torch.Generator().manual_seed(args.seed)
    step = 0
    for epoch in range(args.n_epochs):
        perm = torch.randperm(len(train_text), generator=shuffle_gen).to(train_text.device)
        epoch_losses = []
        for start in progress_bar(range(0, len(perm), args.batch_size), desc=f"Epoch {epoch}", leave=False):
            idx = perm[start:start + args.batch_size]
            loss, recon, kl = model.loss(train_visual[idx], train_text[idx], args.beta)
            if not torch.isfinite(loss):
                fail(f"the loss became {loss.item()} at epoch {epoch}, step {step} (recon {recon.item()}, "
                     f"kl {kl.item()}); try a lower --lr (now {args.lr}) or check the dataset's embeddings")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            epoch_losses.append(loss.item())
            log.scalars(step, {"loss/train": loss.item(), "loss/recon": recon.item(), "loss/kl": kl.item(),
                               "learning_rate": optimizer.param_groups[0]["lr"]})
        val_loss, val_recon, val_kl = evaluate(model, val_text, val_visual, args.batch_size, args.beta, val_seed)
        log.scalars(step, {"loss/val": val_loss, "loss/val_recon": val_recon, "loss/val_kl": val_kl})
        log.info(f"Epoch {epoch}: train loss {np.mean(epoch_losses):.4f}, val loss {val_loss:.4f} "
                 f"(recon {val_recon:.4f}, kl {val_kl:.4f})")
        if val_loss < best_val_loss:
            best_val_loss, best_epoch = val_loss, epoch
            save_prior(model, output_path)
            log.info(f"New best validation loss {val_loss:.4f}: saved {output_path}")
    return best_val_loss, best_epoch


def convert(args: argparse.Namespace) -> Path:
    """--convert_only: write --data_path as our pickle-free .npz (an existing one with the same pairs is kept)."""
    src = Path(args.data_path)
    dest = Path(args.npz_path) if args.npz_path else src.with_suffix(".npz")
    if _same_file(dest, src):
        cli.refuse("--npz_path", dest, "would overwrite --data_path", "choose another name")
    if dest.is_dir():
        cli.refuse("--npz_path", dest, "is a folder", "name the .npz file to write")
    pairs = read_dataset(args)
    if dest.exists():
        if _holds_pairs(dest, pairs):
            print(f"Unchanged: {dest} already holds these {len(pairs)} pairs; nothing written. "
                  f"Train with --data_path {dest}")
            return dest
        if not args.overwrite:
            cli.refuse("--npz_path", dest, "already exists with other pairs",
                       "choose another --npz_path, or replace it with --overwrite")
    save_npz_pairs(pairs, dest)
    texts = "with" if pairs.texts is not None else "without"
    print(f"Wrote {len(pairs)} pairs (embed dim {pairs.embed_dim}, {texts} texts) to {dest}; "
          f"train with --data_path {dest}")
    return dest


def _holds_pairs(path: Path, pairs: PriorPairs) -> bool:
    """Whether the .npz at `path` reads back as exactly `pairs` (an unreadable file does not)."""
    try:
        existing = load_npz_pairs(path)
    except Exception:  # noqa: BLE001 - whatever makes it unreadable (a bad zip, a truncated array), it differs
        return False
    same_texts = (existing.texts is None) == (pairs.texts is None) and (
        pairs.texts is None or list(existing.texts) == list(pairs.texts))
    return (same_texts and np.array_equal(existing.text_embeds, pairs.text_embeds)
            and np.array_equal(existing.visual_embeds, pairs.visual_embeds))


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, then convert or train."""
    args = build_parser().parse_args(argv)

    def run() -> int:
        convert(args) if args.convert_only else train(args)
        return 0

    return cli.run_main(PROGRAM, run)


if __name__ == "__main__":
    sys.exit(main())
