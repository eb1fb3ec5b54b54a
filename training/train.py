"""Fine-tune STEVE-1 (or train it from VPT) by behavioural cloning with hindsight-relabelled goals.

Launch with accelerate for bf16 and several GPUs, or with plain python on a CPU:
    accelerate launch --mixed_precision bf16 training/train.py --in_weights data/weights/steve1/steve1.weights ...
    python training/train.py --in_model tiny --cpu ...

Re-running the same command resumes from --checkpoint_dir (model, optimizer, LR position, data position,
best validation loss); --fresh starts over (old checkpoints are moved aside, never deleted).
Read top to bottom: arguments, setup, then the loop (LR, accumulate windows, clip, step, log, validate, save).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.minecraft_dataset import MinecraftDataset, read_sampling_file
from data.sample_order import ShardedEpochSampler
from embed_conditioned_policy import GOAL_LAYER_KEYS, SteveAgentPolicy
from training.bc_loss import bc_window_loss, split_windows
from training.checkpointing import (
    CheckpointManager,
    TrainProgress,
    export_best,
    export_snapshot,
    weights_paths,
)
from training.lr_schedule import learning_rate_at
from training.metrics import MetricsLogger, hparams_markdown
from training.optim import FREEZABLE_PARTS, apply_freeze, make_optimizer, trainable_summary
from training.performance import speed_up_training
from vpt_model.model_files import load_policy_config, load_policy_weights, save_policy_weights
from vpt_model.policy import detach_state


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    # model and files
    a("--in_model", default="data/weights/vpt/2x.model", help="VPT .model file (architecture) or a preset: 2x, 1x, 3x, tiny")
    a("--in_weights", default=None, help="weights to start from (steve1.weights to fine-tune, rl-from-foundation-2x.weights to train from VPT; its missing goal layer is initialised fresh)")
    a("--out_weights", default="data/weights/steve1/finetuned.weights", help="base name of the exported weights: <out>_latest/_best/_snapshot_<N>.weights")
    a("--checkpoint_dir", default="data/finetuning_checkpoint", help="resumable checkpoints and TensorBoard logs (<dir>/logs); an existing checkpoint here is resumed")
    a("--fresh", action="store_true", help="ignore existing checkpoints (they are moved to <checkpoint_dir>/previous_<time>/) and start over")
    a("--log_dir", default="logs/training", help="where the text log train_YYYYMMDD.log goes")
    # data
    a("--sampling", default="finetune", help="sampling name: reads <sampling_dir>/<sampling>_train.txt and _val.txt")
    a("--sampling_dir", default="data/samplings", help="directory of the sampling files (step 2 writes them)")
    a("--T", type=int, default=320, help="frames per training sample (a multiple of --trunc_t)")
    a("--trunc_t", type=int, default=64, help="truncated-BPTT window: frames per forward/backward; the recurrent state is carried across windows and detached")
    a("--p_uncond", type=float, default=0.1, help="probability that a training sample's goal embeddings are all zero (classifier-free guidance)")
    a("--min_btwn_goals", type=int, default=15, help="smallest gap between hindsight goal frames (>= 15)")
    a("--max_btwn_goals", type=int, default=200, help="gaps are drawn from [min_btwn_goals, max_btwn_goals)")
    a("--augment", action="store_true", help="colour jitter and random grayscale on training samples")
    a("--trust_legacy_pickle", action="store_true", help="allow episodes in the original STEVE-1 pickle layout (pickle can run code: only your own data)")
    a("--num_workers", type=int, default=4, help="DataLoader worker processes per GPU")
    a("--val_every_nth", type=int, default=1, help="validate on every n-th validation sample (1 = all)")
    # optimisation
    a("--batch_size", type=int, default=8, help="samples per process per forward (global batch = batch_size x processes)")
    a("--gradient_accumulation_steps", type=int, default=2, help="windows whose gradients are averaged before one optimizer step")
    a("--learning_rate", type=float, default=1e-5, help="peak learning rate (after warmup)")
    a("--warmup_frames", type=int, default=1_000_000, help="frames of linear warmup from 0")
    a("--n_frames", type=int, default=10_000_000, help="frames to train on; the cosine reaches 0 at 1.1 x n_frames")
    a("--weight_decay", type=float, default=0.039428, help="AdamW weight decay (not on biases, LayerNorm or Embedding weights)")
    a("--max_grad_norm", type=float, default=5.0, help="clip the accumulated gradient to this L2 norm")
    a("--freeze", default="", help=f"comma-separated parts to keep fixed: {','.join(sorted(FREEZABLE_PARTS))} (e.g. cnn,transformer)")
    a("--seed", type=int, default=42, help="seed of the data order, goals, p_uncond draws and initialisation")
    a("--compile", action="store_true", help="torch.compile each CNN stack and transformer block (GPU; slower start, faster steps; training/performance.py)")
    a("--low_memory", action="store_true", help="memory mode: recompute the first CNN stack during backward (about half the activation memory, ~25%% slower; training/performance.py)")
    a("--cpu", action="store_true", help="force the CPU even when a GPU is present")
    a("--mixed_precision", default=None, choices=["no", "bf16", "fp16"], help="override accelerate's setting (accelerate launch --mixed_precision bf16 is the usual way)")
    # schedule of evaluation and saving (in optimizer steps)
    a("--log_freq", type=int, default=10, help="print 'Metrics for step N' and write TensorBoard every this many steps")
    a("--val_freq", type=int, default=100, help="validate every this many steps after --val_freq_switch_steps")
    a("--val_freq_begin", type=int, default=20, help="validate every this many steps at the beginning")
    a("--val_freq_switch_steps", type=int, default=100, help="step at which --val_freq replaces --val_freq_begin")
    a("--save_freq", type=int, default=100, help="write a resumable checkpoint and <out>_latest.weights every this many steps")
    a("--snapshot_every_n_frames", type=int, default=5_000_000, help="write <out>_snapshot_<N>.weights every this many frames (0: never)")
    a("--max_steps", type=int, default=None, help="stop after this many optimizer steps (the LR schedule still follows --n_frames)")
    args = p.parse_args(argv)
    args.freeze = [x for x in args.freeze.split(",") if x]
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuse settings that cannot work, before any work starts, saying how to fix them."""
    problems = []
    if args.T % args.trunc_t:
        problems.append(f"--T {args.T} is not a multiple of --trunc_t {args.trunc_t}")
    if args.gradient_accumulation_steps < 1 or args.batch_size < 1:
        problems.append("--batch_size and --gradient_accumulation_steps must be >= 1")
    for split in ("train", "val"):
        path = Path(args.sampling_dir) / f"{args.sampling}_{split}.txt"
        if not path.is_file():
            problems.append(f"{path} not found: run 2_create_sampling.sh (or check --sampling/--sampling_dir)")
    if args.in_weights and not Path(args.in_weights).is_file():
        problems.append(f"--in_weights {args.in_weights} not found (download_weights.sh puts steve1.weights in data/weights/steve1/)")
    if not args.out_weights.endswith(".weights"):
        problems.append(f"--out_weights must end in .weights, got {args.out_weights}")
    if problems:
        raise SystemExit("training/train.py: " + "; ".join(problems))


def validation_due(step: int, args: argparse.Namespace) -> bool:
    freq = args.val_freq_begin if step < args.val_freq_switch_steps else args.val_freq
    return step % freq == 0


@torch.no_grad()
def validate(policy: SteveAgentPolicy, val_set: MinecraftDataset, args, accelerator) -> float:
    """Mean window loss over the (deterministic) validation samples, all processes together."""
    policy.eval()
    indices = list(range(0, len(val_set), args.val_every_nth))[accelerator.process_index :: accelerator.num_processes]
    loader = DataLoader(
        torch.utils.data.Subset(val_set, indices), batch_size=args.batch_size, num_workers=args.num_workers,
        pin_memory=accelerator.device.type == "cuda",
    )
    total = torch.zeros(2, device=accelerator.device)  # (sum of window losses x batch, number of sample-windows)
    for batch in tqdm(loader, desc="validation", leave=False, disable=not accelerator.is_main_process):
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
        state = policy.initial_state(batch["firsts"].shape[0], accelerator.device)
        for window in split_windows(batch, args.trunc_t):
            with accelerator.autocast():  # the unwrapped policy: no DDP hooks, no recompiles for a short last batch
                loss, state = bc_window_loss(policy, window, state)
            n = window["firsts"].shape[0]
            total[0] += loss.float() * n
            total[1] += n
    total = accelerator.reduce(total, reduction="sum")
    policy.train()
    return (total[0] / total[1].clamp(min=1)).item()


def move_aside_old_checkpoints(checkpoint_dir: Path) -> Path | None:
    old = CheckpointManager(checkpoint_dir).checkpoints()
    if not old:
        return None
    target = checkpoint_dir / f"previous_{datetime.datetime.now():%Y%m%d-%H%M%S}"
    target.mkdir(parents=True)
    for path in old:
        shutil.move(str(path), target / path.name)
    return target


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_args(args)
    accelerator = Accelerator(cpu=args.cpu, mixed_precision=args.mixed_precision)
    is_main = accelerator.is_main_process
    checkpoint_dir = Path(args.checkpoint_dir)
    log = MetricsLogger(checkpoint_dir / "logs", args.log_dir, enabled=is_main)
    if args.fresh and is_main:
        moved = move_aside_old_checkpoints(checkpoint_dir)
        if moved:
            log.info(f"--fresh: earlier checkpoints moved to {moved}")
    accelerator.wait_for_everyone()
    set_seed(args.seed)
    if accelerator.device.type == "cuda":  # fixed shapes every window: let cuDNN pick its fastest convolutions
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    # Derived values, computed once and shown with the rest.
    world = accelerator.num_processes
    frames_per_window = args.trunc_t * args.batch_size * world
    frames_per_step = frames_per_window * args.gradient_accumulation_steps
    total_steps = math.ceil(args.n_frames / frames_per_step)
    config = {**vars(args), "processes": world, "device": str(accelerator.device),
              "mixed_precision": accelerator.mixed_precision, "frames_per_optimizer_step": frames_per_step,
              "optimizer_steps_total": total_steps}
    log.info("Settings:\n" + "\n".join(f"  {k}: {v}" for k, v in sorted(config.items())))
    log.text("hparams", hparams_markdown(config))

    # Model: architecture from --in_model, weights from --in_weights (or a resume checkpoint below).
    policy = SteveAgentPolicy(load_policy_config(args.in_model))
    if args.in_weights:
        load_policy_weights(policy, args.in_weights, allow_missing=GOAL_LAYER_KEYS, verbose=is_main)
    apply_freeze(policy, args.freeze)
    log.info("Parameters:\n" + "\n".join(trainable_summary(policy)))
    policy.to(accelerator.device)
    optimizer = make_optimizer(policy, args.learning_rate, args.weight_decay)

    checkpoints = CheckpointManager(checkpoint_dir)
    progress = TrainProgress()
    resumed = checkpoints.load_latest()
    if resumed is not None:
        path, checkpoint = resumed
        progress = CheckpointManager.restore(checkpoint, policy, optimizer)
        log.info(f"Resuming from {path}: step {progress.step}, {progress.frames:,} frames, best val loss {progress.best_val_loss:.6g}")
        del checkpoint

    # Data: samples of T frames; the order is a seeded permutation per epoch, resumable at any sample.
    train_dirs = read_sampling_file(Path(args.sampling_dir) / f"{args.sampling}_train.txt")
    val_dirs = read_sampling_file(Path(args.sampling_dir) / f"{args.sampling}_val.txt")
    common = dict(T=args.T, min_btwn_goals=args.min_btwn_goals, max_btwn_goals=args.max_btwn_goals,
                  seed=args.seed, trust_legacy_pickle=args.trust_legacy_pickle)
    try:
        train_set = MinecraftDataset(train_dirs, p_uncond=args.p_uncond, train=True, augment=args.augment, **common)
        val_set = MinecraftDataset(val_dirs, p_uncond=0.0, train=False, **common)
        sampler = ShardedEpochSampler(len(train_set), args.batch_size, args.seed, world, accelerator.process_index,
                                      progress.epoch, progress.samples_in_epoch)
    except (OSError, ValueError) as e:  # unreadable episodes, too short for --T, too few samples for a batch
        raise SystemExit(f"training/train.py: {e}") from None
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=args.num_workers,
                        pin_memory=accelerator.device.type == "cuda", persistent_workers=args.num_workers > 0)
    log.info(f"Data: {len(train_set):,} training samples ({train_set.total_frames:,} frames) from {len(train_dirs)} episodes, "
             f"{len(val_set):,} validation samples from {len(val_dirs)} episodes; {sampler.batches_per_epoch:,} batches per epoch")

    speed_up_training(policy, compile_regions=args.compile, low_memory=args.low_memory)
    model, optimizer = accelerator.prepare(policy, optimizer)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    paths = weights_paths(args.out_weights)

    def save_checkpoint() -> None:
        if is_main:
            checkpoints.save(policy, optimizer, progress, config)
            save_policy_weights(policy, paths["latest"])
        accelerator.wait_for_everyone()

    last_val_step = -1

    def run_validation() -> None:
        nonlocal last_val_step
        if last_val_step == progress.step:
            return
        last_val_step = progress.step
        val_loss = validate(policy, val_set, args, accelerator)
        log.scalars(progress.step, {"loss/val": val_loss})
        log.info(f"Validation loss at step {progress.step}: {val_loss:.6g}")
        if val_loss < progress.best_val_loss:
            progress.best_val_loss, progress.best_val_step = val_loss, progress.step
            if is_main:
                export_best(policy, args.out_weights, val_loss, progress)
            log.info(f"New best validation loss: {val_loss:.6g} (step {progress.step}), saved {paths['best']}")

    if resumed is None:
        run_validation()  # the starting point: fine-tuning must beat the weights it started from

    model.train()
    bar = tqdm(total=total_steps, initial=progress.step, desc="train", unit="step", disable=not is_main, dynamic_ncols=True)
    window_losses = []
    last_log_time, last_log_frames = time.time(), progress.frames
    save_due = stop = False
    grad_norm = torch.tensor(0.0)
    for batch in loader:
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
        # Each sample starts an episode for the policy (firsts[:, 0] = True), so the state starts empty.
        state = policy.initial_state(batch["firsts"].shape[0], accelerator.device)
        for window in split_windows(batch, args.trunc_t):
            lr = learning_rate_at(progress.frames, args.learning_rate, args.warmup_frames, args.n_frames)
            for group in optimizer.param_groups:
                group["lr"] = lr
            sync = (progress.micro_step + 1) % args.gradient_accumulation_steps == 0
            # Without sync, DDP skips its all-reduce: gradients add up locally until the step.
            with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                loss, state = bc_window_loss(model, window, state)
                accelerator.backward(loss / args.gradient_accumulation_steps)
            state = detach_state(state)
            window_losses.append(loss.detach())
            progress.micro_step += 1
            progress.frames += frames_per_window
            if not sync:
                continue

            grad_norm = accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
            step_loss = accelerator.reduce(torch.stack(window_losses[-args.gradient_accumulation_steps:]).mean(), "mean")
            if not torch.isfinite(step_loss):  # one GPU sync per step; stop before a NaN reaches the weights
                log.info(f"Loss is {step_loss.item()} at step {progress.step + 1}: stopping without saving. The last good "
                         f"checkpoint is in {checkpoint_dir}. Lower --learning_rate or check the data "
                         f"(python data/diagnose_dataset.py).")
                bar.close()
                log.close()
                return 1
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            progress.step += 1
            bar.update(1)

            if progress.step % args.log_freq == 0:
                now = time.time()
                values = {
                    "loss": accelerator.reduce(torch.stack(window_losses).mean(), "mean").item(),
                    "learning_rate": lr,
                    "grad_l2_norm": float(grad_norm),
                    "processed_frames": progress.frames,
                    "step": progress.step,
                    "frames_per_s": (progress.frames - last_log_frames) / max(now - last_log_time, 1e-9),
                }
                if torch.cuda.is_available():
                    values["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
                window_losses.clear()
                last_log_time, last_log_frames = now, progress.frames
                log.metrics_block(progress.step, values)
                log.scalars(progress.step, {"loss/train": values["loss"], "learning_rate": lr,
                                            "grad_l2_norm": values["grad_l2_norm"], "processed_frames": progress.frames,
                                            "throughput/frames_per_s": values["frames_per_s"],
                                            **({"memory/peak_gib": values["peak_memory_gib"]} if "peak_memory_gib" in values else {})})
                bar.set_postfix(loss=f"{values['loss']:.4g}", lr=f"{lr:.2e}")
            if validation_due(progress.step, args):
                run_validation()
            if args.snapshot_every_n_frames:
                threshold = (progress.snapshots_written + 1) * args.snapshot_every_n_frames
                if progress.frames >= threshold:
                    if is_main:
                        log.info(f"Snapshot at {progress.frames:,} frames: {export_snapshot(policy, args.out_weights, threshold)}")
                    progress.snapshots_written += 1
            save_due |= progress.step % args.save_freq == 0
            stop |= progress.frames >= args.n_frames or (args.max_steps is not None and progress.step >= args.max_steps)

        # Checkpoints are written (and runs end) only where a batch ends and no gradient is pending,
        # so a resume continues with exactly the next sample and an empty accumulation.
        progress.samples_in_epoch += sampler.global_batch_size
        if progress.samples_in_epoch + sampler.global_batch_size > sampler.batches_per_epoch * sampler.global_batch_size:
            progress.epoch, progress.samples_in_epoch = progress.epoch + 1, 0
        if progress.micro_step % args.gradient_accumulation_steps == 0 and (save_due or stop):
            if stop:
                run_validation()
            save_checkpoint()
            save_due = False
            if stop:
                break
    bar.close()
    log.info(f"Done: step {progress.step}, {progress.frames:,} frames. Weights: {paths['latest']} (latest), "
             f"{paths['best']} (best val loss {progress.best_val_loss:.6g} at step {progress.best_val_step}). "
             f"TensorBoard: tensorboard --logdir {checkpoint_dir / 'logs'}")
    log.close()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
