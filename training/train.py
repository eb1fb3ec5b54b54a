"""Fine-tune STEVE-1 (or train it from VPT) by behavioural cloning with hindsight-relabelled goals.

    .venv/bin/accelerate launch training/train.py --in_weights data/weights/steve1/steve1.weights --sampling my_task ...
    .venv/bin/python training/train.py --in_model tiny --cpu ...          (plain python: one process)

One command is one run, kept in --checkpoint_dir: the same command again resumes where it stopped (model,
optimizer, LR position, data position, RNG, best validation loss) or, when the run is finished, says so and
writes nothing. A folder that holds another run or that another live process uses is refused before any
work, and so is every setting that cannot work (README: "Starting, resuming, re-running"). Ctrl-C and
SIGTERM end a run without saving, with a "run ended" line in the log (exit status 130 / 143); the same
command resumes from the last checkpoint, as after kill -9.
Frequencies (--log_freq, --val_freq, --save_freq, --max_steps) count optimizer steps; one optimizer step
is trunc_t x batch_size x processes x gradient_accumulation_steps frames.

Read top to bottom: settings and their checks, then `train`: setup, the loop. One optimizer step
(training/optimizer_step.py), validation (training/validation.py), logging (training/metrics.py) and saving
(training/checkpointing.py) are named parts.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.episode import EMBED_START
from data.minecraft_dataset import MinecraftDataset, SkippingBadSamples, read_sampling_file
from data.sample_order import ShardedEpochSampler
from embed_conditioned_policy import GOAL_LAYER_KEYS, SteveAgentPolicy
from toolkit_utils import cli
from toolkit_utils.progress import progress_bar
from training.checkpointing import (
    TENSORBOARD_DIR,
    CheckpointManager,
    TrainProgress,
    export_snapshot_if_due,
    save_resumable,
    weights_paths,
)
from training.checks import check_goal_gaps, check_policy_files, check_sampling, check_windows, check_writable_folder
from training.device import (
    COMPILE_CHOICES,
    PRECISIONS,
    capped_workers,
    check_compile,
    check_processes_have_gpus,
    choose_precision,
)
from training.lr_schedule import learning_rate_at
from training.metrics import MetricsLogger, TrainingMetrics, daily_log_path, hparams_markdown
from training.optim import FREEZABLE_PARTS, apply_freeze, make_optimizer, trainable_summary
from training.optimizer_step import BCStepper, StepResult
from training.performance import speed_up_training
from training.run_identity import changed_settings, identity_hash, run_identity
from training.run_lock import RunLock
from training.run_start import RunStart, finished_message, plan_start, prepare_folder, take_lock
from training.validation import validate_and_keep_best
from vpt_model.config import PolicyConfig
from vpt_model.model_files import load_policy_weights

PROGRAM = "training/train.py"
DEFAULT_CHECKPOINT_ROOT = "data/finetuning_checkpoint"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    a = p.add_argument
    # model and files
    a("--in_model", default="data/weights/vpt/2x.model", help="VPT .model file (architecture) or a preset: 2x, 1x, 3x, tiny")
    a("--in_weights", default=None, help="weights to start from (steve1.weights to fine-tune, rl-from-foundation-2x.weights to train from VPT; its missing goal layer is initialised fresh); none: a fresh initialisation")
    a("--out_weights", default="data/weights/steve1/finetuned.weights", help="base name of the exported weights: <out>_latest/_best/_snapshot_<N>.weights; <out>_owner.json names the --checkpoint_dir whose run writes them (another folder's run is refused)")
    a("--checkpoint_dir", default=None, help=f"this run's folder: resumable checkpoints, TensorBoard logs (<dir>/logs), the run lock (default: {DEFAULT_CHECKPOINT_ROOT}/<--out_weights name without .weights>)")
    a("--fresh", action="store_true", help="start over: everything of the run in --checkpoint_dir (checkpoints, TensorBoard logs, exported weights) moves to <checkpoint_dir>/previous_<time>/ (exported weights that another folder's run owns are still refused)")
    a("--check_only", action="store_true", help="check every setting, the files and the checkpoint folder, then exit (0: the run can start or is finished; 2: one line saying what to fix); writes nothing (the output folders are test-written and left as they were). The number of processes is read from WORLD_SIZE")
    a("--log_dir", default="logs/training", help="where the text log train_YYYYMMDD.log goes")
    # data
    a("--sampling", default="finetune", help="sampling name: reads <sampling_dir>/<sampling>_train.txt and _val.txt")
    a("--sampling_dir", default="data/samplings", help="directory of the sampling files (step 2 writes them)")
    a("--T", type=cli.int_range(1), default=320, help="frames per training sample (a multiple of --trunc_t)")
    a("--trunc_t", type=cli.int_range(1), default=64, help="truncated-BPTT window: frames per forward/backward; the recurrent state is carried across windows and detached")
    a("--p_uncond", type=cli.probability, default=0.1, help="probability that a training sample's goal embeddings are all zero (classifier-free guidance)")
    a("--min_btwn_goals", type=cli.int_range(EMBED_START), default=15, help=f"smallest gap between hindsight goal frames (>= {EMBED_START})")
    a("--max_btwn_goals", type=cli.int_range(EMBED_START + 1), default=200, help="gaps are drawn from [min_btwn_goals, max_btwn_goals)")
    a("--augment", action="store_true", help="colour jitter and random grayscale on training samples")
    a("--trust_legacy_pickle", action="store_true", help="allow episodes in the original STEVE-1 pickle layout (pickle can run code: only your own data)")
    a("--num_workers", type=cli.int_range(0), default=4, help="DataLoader worker processes per GPU (0: load in the training process); at most one per CPU core this process may use (the log says when capped)")
    a("--val_every_nth", type=cli.int_range(1), default=1, help="validate on every n-th validation sample (1 = all)")
    a("--max_bad_sample_fraction", type=cli.probability, default=0.05, help="unreadable samples (e.g. a truncated frames.mp4) are skipped and counted; the run stops when more than this fraction of the samples read so far (at least one epoch's worth) failed")
    # optimisation
    a("--batch_size", type=cli.int_range(1), default=8, help="samples per process per forward (global batch = batch_size x processes)")
    a("--gradient_accumulation_steps", type=cli.int_range(1), default=2, help="windows whose gradients are averaged before one optimizer step")
    a("--learning_rate", type=cli.positive_float, default=1e-5, help="peak learning rate (after warmup)")
    a("--warmup_frames", type=cli.int_range(0), default=1_000_000, help="frames of linear warmup from 0 (at most --n_frames)")
    a("--n_frames", type=cli.int_range(1), default=10_000_000, help="frames to train on (the run stops at the optimizer step that reaches them); the cosine reaches 0 at 1.1 x n_frames")
    a("--weight_decay", type=cli.non_negative_float, default=0.039428, help="AdamW weight decay (not on biases, LayerNorm or Embedding weights)")
    a("--max_grad_norm", type=cli.positive_float, default=5.0, help="clip the accumulated gradient to this L2 norm")
    a("--freeze", type=cli.comma_list(sorted(FREEZABLE_PARTS)), default=[], help=f"comma-separated parts to keep fixed: {','.join(sorted(FREEZABLE_PARTS))} (e.g. cnn,transformer); default: none, everything trains")
    a("--seed", type=cli.int_range(0), default=42, help="seed of the data order, training goals, p_uncond draws and initialisation (validation goals do not depend on it)")
    a("--compile", choices=COMPILE_CHOICES, default="auto", help="torch.compile each CNN stack and transformer block (training/performance.py: slower start, faster steps); auto: yes on a GPU, no on a CPU; yes is refused on a CPU")
    a("--low_memory", action="store_true", help="memory mode: recompute the first CNN stack during backward (about half the activation memory, ~25%% slower; training/performance.py)")
    a("--cpu", action="store_true", help="force the CPU even when a GPU is present")
    a("--mixed_precision", choices=PRECISIONS, default="auto", help="bf16 autocast or fp32 ('no'); auto: bf16 on a GPU that has it, else fp32")
    # schedule of logging, evaluation and saving: all in optimizer steps
    a("--log_freq", type=cli.int_range(1), default=10, help="print 'Metrics for step N' and write TensorBoard every this many optimizer steps")
    a("--val_freq", type=cli.int_range(1), default=100, help="validate every this many optimizer steps from --val_freq_switch_steps on")
    a("--val_freq_begin", type=cli.int_range(1), default=20, help="validate every this many optimizer steps before --val_freq_switch_steps")
    a("--val_freq_switch_steps", type=cli.int_range(0), default=100, help="optimizer step at which --val_freq replaces --val_freq_begin")
    a("--save_freq", type=cli.int_range(1), default=100, help="write a resumable checkpoint and <out>_latest.weights every this many optimizer steps (at the first step from there on where a batch of samples ends)")
    a("--snapshot_every_n_frames", type=cli.int_range(0), default=5_000_000, help="write <out>_snapshot_<N>.weights every this many frames (0: never)")
    a("--max_steps", type=cli.int_range(1), default=None, help="stop after this many optimizer steps (a multiple of the steps between batch ends, so the run can continue later); the LR schedule still follows --n_frames")
    args = p.parse_args(argv)
    if args.checkpoint_dir is None:
        args.checkpoint_dir = str(Path(DEFAULT_CHECKPOINT_ROOT) / weights_paths(args.out_weights)["stem"].name)
    return args


def steps_between_batch_ends(args: argparse.Namespace) -> int:
    """Optimizer steps from one point where a batch ends with no pending gradient to the next."""
    windows = args.T // args.trunc_t
    return math.lcm(windows, args.gradient_accumulation_steps) // args.gradient_accumulation_steps


def check_settings(args: argparse.Namespace) -> PolicyConfig:
    """Refuse (cli.SettingError) what cannot work, before any work; returns the architecture."""
    check_windows(args.T, args.trunc_t)
    check_goal_gaps(args.min_btwn_goals, args.max_btwn_goals)
    if not args.out_weights.endswith(".weights"):
        cli.refuse("--out_weights", args.out_weights, "must end in .weights", "e.g. data/weights/steve1/my_task.weights")
    if args.warmup_frames > args.n_frames:
        cli.refuse("--warmup_frames", f"{args.warmup_frames:_}", f"is more than --n_frames {args.n_frames:_}: the learning "
                   "rate would never reach its peak", f"use at most --n_frames (WARMUP_FRAMES <= TOTAL_FRAMES in the "
                   f"scripts), e.g. a tenth: --warmup_frames {args.n_frames // 10:_}")
    if set(args.freeze) == set(FREEZABLE_PARTS):
        cli.refuse("--freeze", ",".join(args.freeze), "leaves nothing to train",
                   "keep at least the goal layer and heads trainable: e.g. --freeze cnn,transformer")
    stride = steps_between_batch_ends(args)
    if args.max_steps is not None and args.max_steps % stride:
        cli.refuse("--max_steps", args.max_steps, f"does not end where a batch ends (every {stride} optimizer steps with "
                   f"--T {args.T}, --trunc_t {args.trunc_t}, --gradient_accumulation_steps {args.gradient_accumulation_steps})",
                   f"use a multiple of {stride}, e.g. {args.max_steps + stride - args.max_steps % stride}")
    check_compile(args.compile, args.cpu)
    check_processes_have_gpus(processes_on_this_machine(), args.cpu)
    if launched_rank() == 0:  # the main process writes them all; one tester keeps others' checks from racing it
        check_output_folders(args)
    check_sampling(args.sampling_dir, args.sampling)
    return check_policy_files(args.in_model, [args.in_weights] if args.in_weights else [], GOAL_LAYER_KEYS)


def check_output_folders(args: argparse.Namespace) -> None:
    """Every folder the run writes can be created and written: refused now in one line, not by a traceback later."""
    for setting, value, folder, variable in (
        ("--checkpoint_dir", args.checkpoint_dir, args.checkpoint_dir, "CHECKPOINT_DIR"),
        ("--log_dir", args.log_dir, args.log_dir, "LOG_DIR"),
        ("--out_weights", args.out_weights, Path(args.out_weights).parent, "OUT_WEIGHTS"),
    ):
        check_writable_folder(setting, value, folder, f"choose a folder you can write ({variable} in the scripts; "
                              "missing folders are created)")


def load_datasets(args: argparse.Namespace, world: int) -> tuple[MinecraftDataset, MinecraftDataset]:
    """The training and validation samples; episodes too short for --T or unreadable at the start are refused."""
    lists = {split: read_sampling_file(Path(args.sampling_dir) / f"{args.sampling}_{split}.txt") for split in ("train", "val")}
    common = dict(T=args.T, min_btwn_goals=args.min_btwn_goals, max_btwn_goals=args.max_btwn_goals,
                  seed=args.seed, trust_legacy_pickle=args.trust_legacy_pickle)
    try:
        train_set = MinecraftDataset(lists["train"], p_uncond=args.p_uncond, train=True, augment=args.augment, **common)
        val_set = MinecraftDataset(lists["val"], p_uncond=0.0, train=False, **common)
    except (OSError, ValueError) as e:  # an unreadable episode, too short for --T, an empty list
        cli.refuse("--sampling", args.sampling, " ".join(str(e).split()),
                   "fix or remove the episode (.venv/bin/python data/EpisodeStorage.py --validate <episode>), or create the sampling again")
    if args.batch_size * world > len(train_set):
        cli.refuse("--batch_size", args.batch_size, f"x {world} processes needs more samples than the {len(train_set)} "
                   f"training samples of --sampling {args.sampling}", "lower --batch_size or add episodes")
    return train_set, val_set


def launched_world_size() -> int:
    """Processes of this run: torchrun/accelerate set WORLD_SIZE; plain python (and --check_only) reads it too."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def processes_on_this_machine() -> int:
    """This machine's processes: torchrun's LOCAL_WORLD_SIZE, else WORLD_SIZE (one machine: the template's check)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", launched_world_size()))


def launched_rank() -> int:
    """This process's rank among all processes (0: the main process, and plain python)."""
    return int(os.environ.get("RANK", "0"))


def prepare_model(args: argparse.Namespace, architecture: PolicyConfig, accelerator: Accelerator, compile_policy: bool,
                  log: MetricsLogger) -> tuple[SteveAgentPolicy, torch.nn.Module, torch.optim.Optimizer]:
    """The policy (starting weights, frozen parts), its optimizer, and the model the loop trains (DDP, compiled).

    The one place where the model is set up for training: `policy` is the plain module (saved, validated),
    `model` what forward/backward run through.
    """
    policy = SteveAgentPolicy(architecture)
    if args.in_weights:
        load_policy_weights(policy, args.in_weights, allow_missing=GOAL_LAYER_KEYS, verbose=accelerator.is_main_process)
    apply_freeze(policy, args.freeze)
    log.info("Parameters:\n" + "\n".join(trainable_summary(policy)))
    policy.to(accelerator.device)
    optimizer = make_optimizer(policy, args.learning_rate, args.weight_decay)
    # Compiled regions (each CNN stack, each transformer block) and the memory mode live inside `policy`, so
    # the saved state dict, validation and DDP see the plain module.
    speed_up_training(policy, compile_regions=compile_policy, low_memory=args.low_memory)
    model, optimizer = accelerator.prepare(policy, optimizer)
    return policy, model, optimizer


def validation_due(step: int, args: argparse.Namespace) -> bool:
    freq = args.val_freq_begin if step < args.val_freq_switch_steps else args.val_freq
    return step % freq == 0


def stop_reason(result: StepResult, progress: TrainProgress, args: argparse.Namespace, samples_per_epoch: int) -> str | None:
    """Why the run must stop after this step, or None: a non-finite loss or gradient, or more than
    --max_bad_sample_fraction of the samples read so far (counted against at least one epoch) could not be read."""
    if not (math.isfinite(result.loss) and math.isfinite(result.grad_norm)):
        what = f"Loss is {result.loss}" if not math.isfinite(result.loss) else f"The gradient norm is {result.grad_norm}"
        return (f"{what} at step {progress.step + 1}: stopping without saving. The last good checkpoint is in "
                f"{args.checkpoint_dir}. Lower --learning_rate or check the data (.venv/bin/python data/diagnose_dataset.py).")
    if progress.samples_skipped > args.max_bad_sample_fraction * max(progress.samples_read, samples_per_epoch):
        return (f"{progress.samples_skipped} of {progress.samples_read} training samples could not be read (more than "
                f"--max_bad_sample_fraction {args.max_bad_sample_fraction}): stopping without saving. Check the episodes "
                f"named above (.venv/bin/python data/EpisodeStorage.py --validate <episode>), fix or remove them from the sampling, "
                f"then run the same command again.")
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = sys.argv if argv is None else [PROGRAM, *argv]
    return cli.run_main(PROGRAM, lambda: train(args, command))


def train(args: argparse.Namespace, command: list[str]) -> int:
    # ---- Checks: every process, read only. A refusal is one line and exit status 2 (cli.run_main).
    world = launched_world_size()
    architecture = check_settings(args)
    train_set, val_set = load_datasets(args, world)
    frames_per_window = args.trunc_t * args.batch_size * world
    frames_per_step = frames_per_window * args.gradient_accumulation_steps
    total_steps = math.ceil(args.n_frames / frames_per_step)
    identity = run_identity(args, world, architecture)
    start = plan_start(args.checkpoint_dir, args.out_weights, identity, args.fresh, total_steps, args.max_steps)
    if args.check_only:
        return 0
    if start.finished:
        print(finished_message(start, args.out_weights))
        return 0

    # ---- Setup: the lock, the folder, the logger; then the model, the data and where to start.
    precision, compile_policy, precision_note = choose_precision(args.mixed_precision, args.compile, args.cpu)
    args.num_workers, workers_note = capped_workers(args.num_workers)
    accelerator = Accelerator(cpu=args.cpu, mixed_precision=precision)
    is_main = accelerator.is_main_process
    lock, folder_notes = RunLock(args.checkpoint_dir), []
    if is_main:
        start, folder_notes = claim_folder(lock, args, identity, total_steps)
    accelerator.wait_for_everyone()
    checkpoint_dir = Path(args.checkpoint_dir)
    config = {**vars(args), "processes": world, "device": str(accelerator.device), "mixed_precision": precision,
              "compile": compile_policy, "frames_per_optimizer_step": frames_per_step, "optimizer_steps_total": total_steps}
    resumed_at = start.resume.progress.step if start.resume else None
    log = MetricsLogger(checkpoint_dir / TENSORBOARD_DIR, daily_log_path(args.log_dir), enabled=is_main,
                        purge_step=None if resumed_at is None else resumed_at + 1)
    previous_handlers, progress = stop_on_signals(), None
    try:
        log.run_started(command, identity_hash(identity))
        for note in [*folder_notes, precision_note, workers_note]:
            if note:
                log.info(note)
        log.info("Settings:\n" + "\n".join(f"  {k}: {v}" for k, v in sorted(config.items())))
        if resumed_at is None:
            log.text("hparams", hparams_markdown(config))
        set_seed(args.seed)
        if accelerator.device.type == "cuda":  # fixed shapes every window: let cuDNN pick its fastest convolutions
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        policy, model, optimizer = prepare_model(args, architecture, accelerator, compile_policy, log)
        progress = TrainProgress()
        if start.resume is not None:
            progress = CheckpointManager.restore(start.resume.path, policy, optimizer)
            changes = changed_settings(start.resume.config, config)
            log.info(f"Resuming from {start.resume.path}: step {progress.step}, {progress.frames:,} frames, best val loss "
                     f"{progress.best_val_loss:.6g}" + (f"; changed settings: {', '.join(changes)}" if changes else ""))
        sampler = ShardedEpochSampler(len(train_set), args.batch_size, args.seed, world, accelerator.process_index,
                                      progress.epoch, progress.samples_in_epoch)
        loader = DataLoader(SkippingBadSamples(train_set), batch_sampler=sampler, num_workers=args.num_workers,
                            pin_memory=accelerator.device.type == "cuda", persistent_workers=args.num_workers > 0)
        log.info(f"Data: {len(train_set):,} training samples ({train_set.total_frames:,} frames) from "
                 f"{len(train_set.episode_dirs)} episodes, {len(val_set):,} validation samples from "
                 f"{len(val_set.episode_dirs)} episodes; {sampler.batches_per_epoch:,} batches per epoch. "
                 f"TensorBoard: .venv/bin/tensorboard --logdir {checkpoint_dir / TENSORBOARD_DIR}")
        stepper = BCStepper(model, policy, optimizer, accelerator, loader, sampler.global_batch_size, args.trunc_t,
                            args.gradient_accumulation_steps, args.max_grad_norm)
        checkpoints = CheckpointManager(checkpoint_dir)
        if start.resume is None:
            validate_and_keep_best(policy, val_set, args, accelerator, log, progress)  # fine-tuning must beat its start

        # ---- The loop: one optimizer step at a time until the budget (or --max_steps).
        model.train()
        interval = TrainingMetrics(progress.frames)
        bar = progress_bar(total=start.stop_step, initial=progress.step, desc="train", unit="step", disable=not is_main,
                           dynamic_ncols=True)
        save_due = False
        while progress.step < start.stop_step:
            lr = learning_rate_at(progress.frames + frames_per_step - frames_per_window, args.learning_rate,
                                  args.warmup_frames, args.n_frames)  # the frames before the step's last window
            result = stepper.step(lr)
            for line in result.skipped:
                log.info(f"Training sample skipped (unreadable): {line}")
            progress.samples_read += result.samples_read
            progress.samples_skipped += len(result.skipped)
            problem = stop_reason(result, progress, args, len(train_set))
            if problem:
                return stop(log, bar, problem)
            progress.step += 1
            progress.frames += frames_per_step
            interval.add_step(result.loss)
            bar.update(1)
            if progress.step % args.log_freq == 0:
                metrics = interval.collect(progress.frames, lr, result.grad_norm, progress.samples_skipped)
                log.scalars(progress.step, metrics)
                log.metrics_block(progress.step, metrics)
                bar.set_postfix(loss=f"{metrics['loss/train']:.4g}", lr=f"{lr:.2e}")
            if validation_due(progress.step, args) or progress.step == start.stop_step:
                validate_and_keep_best(policy, val_set, args, accelerator, log, progress)
            export_snapshot_if_due(policy, progress, args.out_weights, args.snapshot_every_n_frames, is_main, log)
            save_due |= progress.step % args.save_freq == 0
            # A checkpoint where a batch ends, with no pending gradient, resumes exactly; the last one ends the run.
            if (save_due and result.batch_ended) or progress.step == start.stop_step:
                progress.epoch, progress.samples_in_epoch = sampler.position_after(stepper.batches_drawn)
                if is_main:
                    save_resumable(checkpoints, policy, optimizer, progress, config, identity, args.out_weights, log)
                accelerator.wait_for_everyone()
                save_due = False
        bar.close()
        paths = weights_paths(args.out_weights)
        log.info(f"Done: step {progress.step}, {progress.frames:,} frames. Weights: {paths['latest']} (latest), "
                 f"{paths['best']} (best val loss {progress.best_val_loss:.6g} at step {progress.best_val_step}). "
                 f"TensorBoard: .venv/bin/tensorboard --logdir {checkpoint_dir / TENSORBOARD_DIR}")
        log.run_ended(f"finished at step {progress.step}" if progress.step >= total_steps
                      else f"stopped at --max_steps {progress.step}")
        accelerator.end_training()
        return 0
    except (KeyboardInterrupt, Terminated) as error:  # Ctrl-C or SIGTERM: like kill -9, minus the silence
        signal_number = error.signal_number if isinstance(error, Terminated) else signal.SIGINT
        name = signal.Signals(signal_number).name
        newest = CheckpointManager(checkpoint_dir).checkpoints()
        resume = f"the same command resumes from {newest[-1]}" if newest else "no checkpoint yet: the same command starts over"
        log.run_ended(f"{name} ({'Ctrl-C' if name == 'SIGINT' else 'terminated'}) at step {progress.step if progress else 0}: "
                      f"stopped without saving; {resume}")
        return 128 + signal_number  # the shell's status for a process ended by that signal
    except BaseException as error:
        log.run_failed(error)
        raise
    finally:
        for signal_number, handler in previous_handlers.items():
            signal.signal(signal_number, handler)
        log.close()
        lock.release()


def claim_folder(lock: RunLock, args: argparse.Namespace, identity: dict, total_steps: int) -> tuple[RunStart, list[str]]:
    """Main process: take the run lock, decide again under it, tidy the folder and claim the exports.

    Returns where to start and log lines about the folder. A refusal here (another run got in between the
    checks and the lock) releases the lock before the one-line refusal ends the program.
    """
    notes = take_lock(lock, args.checkpoint_dir)
    try:
        start = plan_start(args.checkpoint_dir, args.out_weights, identity, args.fresh, total_steps, args.max_steps,
                           check_lock=False)
        notes += prepare_folder(start, args.checkpoint_dir, args.out_weights, identity_hash(identity))
    except cli.SettingError:
        lock.release()
        raise
    return start, notes


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException, like KeyboardInterrupt: no `except Exception` swallows it)."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


def stop_on_signals() -> dict[int, object]:
    """Make SIGTERM raise Terminated in this process, so the run logs how it ended; returns the handlers it replaced.

    Only in the process that installed it: forked DataLoader workers inherit the handler and must still die
    quietly when the loader shuts them down. A second SIGTERM while the first is handled kills at once
    (the default), which leaves what kill -9 leaves: a run that resumes from its last checkpoint.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}  # Python delivers signals to the main thread only (a caller that runs train() in a thread)
    owner = os.getpid()

    def handle(signal_number: int, frame: object) -> None:
        signal.signal(signal_number, signal.SIG_DFL)
        if os.getpid() != owner:
            os.kill(os.getpid(), signal_number)
            return
        raise Terminated(signal_number)

    return {signal.SIGTERM: signal.signal(signal.SIGTERM, handle)}


def stop(log: MetricsLogger, bar: tqdm, message: str) -> int:
    """End the run early with a message (exit status 1); the last checkpoint stays as it was."""
    bar.close()
    log.info(message)
    log.run_ended("stopped: " + message)
    return 1


if __name__ == "__main__":
    sys.exit(main())
