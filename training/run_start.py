"""How a run starts: new, resumed from its newest loadable checkpoint, or already finished.

`plan_start` only reads (the check before `accelerate launch` runs it too); it refuses a folder that another
live run holds, that holds a run with another identity or only checkpoints that do not load, and exported
weights (--out_weights) that another run's folder owns. `prepare_folder` then does the writing, on the main
process while it holds the run lock: it removes temporary files of killed writers, moves unreadable
checkpoints aside, for a new run moves everything of an earlier run to `previous_<time>/`, and claims the
exports for this run (`<out>_owner.json`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, NoReturn

from toolkit_utils import cli
from training.checkpointing import (
    Checkpoint,
    CheckpointManager,
    claim_exports,
    exported_files,
    exports_owner,
    move_previous_run,
    remove_temporary_exports,
    same_folder,
    weights_paths,
)
from training.run_identity import identity_differences
from training.run_lock import RunLock, RunLockHeld, lock_holder

OTHER_DIR_FIX = "choose another --checkpoint_dir (CHECKPOINT_DIR in the scripts)"
OTHER_OUT_FIX = "choose another --out_weights (OUT_WEIGHTS in the scripts)"


@dataclasses.dataclass
class RunStart:
    """What the checkpoint folder says about this run."""

    resume: Checkpoint | None  # the newest loadable checkpoint of this run, or None: a new run
    unreadable: list[Path]  # checkpoints with higher numbers than `resume` that do not load
    stop_step: int  # the optimizer step this command stops at
    total_steps: int  # the optimizer step that reaches --n_frames

    @property
    def finished(self) -> bool:
        return self.resume is not None and self.resume.progress.step >= self.stop_step


def plan_start(checkpoint_dir: str | os.PathLike, out_weights: str, identity: dict[str, Any], fresh: bool,
               total_steps: int, max_steps: int | None, check_lock: bool = True) -> RunStart:
    """Read the folder and decide; raises cli.SettingError (one line) when the run must not start."""
    checkpoint_dir = Path(checkpoint_dir)
    holder = lock_holder(checkpoint_dir) if check_lock else None
    if holder:
        refuse_locked(checkpoint_dir, holder)
    check_exports_owner(out_weights, checkpoint_dir)  # --fresh too: it would move another run's files
    stop_step = min(total_steps, max_steps or total_steps)
    if fresh:
        return RunStart(None, [], stop_step, total_steps)
    checkpoint, unreadable = CheckpointManager(checkpoint_dir).newest_loadable()
    if checkpoint is None and unreadable:  # starting at step 0 would silently throw the run away
        names = ", ".join(p.name for p in unreadable)
        cli.refuse("--checkpoint_dir", checkpoint_dir, f"none of its checkpoints loads ({names})",
                   f"restore them (e.g. from a backup), or add --fresh to start over (they move to "
                   f"{checkpoint_dir}/previous_<time>/)")
    if checkpoint is not None:
        if not checkpoint.identity:
            problem = f"holds {checkpoint.path.name}, written by an earlier toolkit version that did not record its run"
        else:
            differences = identity_differences(checkpoint.identity, identity)
            problem = f"holds another run ({'; '.join(differences)})" if differences else ""
        if problem:
            cli.refuse("--checkpoint_dir", checkpoint_dir, problem, f"add --fresh to start over (the old run moves to "
                       f"{checkpoint_dir}/previous_<time>/), or {OTHER_DIR_FIX}")
    return RunStart(checkpoint, unreadable, stop_step, total_steps)


def check_exports_owner(out_weights: str, checkpoint_dir: str | os.PathLike) -> None:
    """Refuse exports next to --out_weights that belong to the run of another checkpoint folder.

    Two runs writing one `<out>_latest.weights` would overwrite each other's weights; `<out>_owner.json` says
    whose they are (claimed by `prepare_folder`).
    """
    try:
        owner = exports_owner(out_weights)
    except ValueError as e:
        cli.refuse("--out_weights", out_weights, f"{e}, so it is unknown which run owns the files beside it",
                   f"{OTHER_OUT_FIX}, or move {weights_paths(out_weights)['owner'].name} away if no other run writes there")
    if owner is None or same_folder(owner, checkpoint_dir):
        return
    refuse_owned(out_weights, owner)


def refuse_owned(out_weights: str, owner: str) -> NoReturn:
    """The one-line refusal for exports that the run in another checkpoint folder owns."""
    names = ", ".join(p.name for p in exported_files(out_weights))
    if Path(owner).is_dir():
        fix = f"{OTHER_OUT_FIX}, or continue that run with --checkpoint_dir {owner} (CHECKPOINT_DIR in the scripts)"
    else:
        fix = f"{OTHER_OUT_FIX}, or, as that folder is gone, move these files away first"
    cli.refuse("--out_weights", out_weights, f"its exported files ({names}) belong to the run in CHECKPOINT_DIR {owner}",
               fix)


def refuse_locked(checkpoint_dir: str | os.PathLike, holder: str) -> NoReturn:
    """The one-line refusal for a folder that another live run holds."""
    cli.refuse("--checkpoint_dir", checkpoint_dir, f"is in use by another run: {holder}", f"wait until it ends, or {OTHER_DIR_FIX}")


def take_lock(lock: RunLock, checkpoint_dir: str | os.PathLike) -> list[str]:
    """Acquire the folder's lock for this run (refused when a live run has it); log lines about a dead holder."""
    try:
        dead_holder = lock.acquire()
    except RunLockHeld as holder:
        refuse_locked(checkpoint_dir, str(holder))
    return [f"The lock of {dead_holder} (no longer running) was taken over"] if dead_holder else []


def finished_message(start: RunStart, out_weights: str) -> str:
    """What a re-run of a finished command prints."""
    progress = start.resume.progress
    paths = weights_paths(out_weights)
    how = ("--fresh starts it over" if progress.step >= start.total_steps else
           f"it stopped at --max_steps {start.stop_step} of {start.total_steps} steps: a higher --max_steps continues it")
    return (f"This run is finished: step {progress.step} ({progress.frames:,} frames). Weights: {paths['latest']} (latest), "
            f"{paths['best']} (best validation loss {progress.best_val_loss:.6g} at step {progress.best_val_step}). "
            f"Nothing to do; {how}.")


def prepare_folder(start: RunStart, checkpoint_dir: str | os.PathLike, out_weights: str, settings_hash: str) -> list[str]:
    """Tidy the folder for this run and claim its exports (main process, holding the run lock); returns log lines
    saying what moved. Refuses (cli.SettingError) when another run claimed the exports since the checks."""
    manager = CheckpointManager(checkpoint_dir)
    notes = [f"Removed {p} (a temporary file of a killed writer)"
             for p in manager.remove_temporary_files() + remove_temporary_exports(out_weights)]
    if start.unreadable:
        target = manager.move_aside(start.unreadable)
        notes.append(f"Checkpoints that do not load moved to {target}: {', '.join(p.name for p in start.unreadable)}")
    if start.resume is None:
        moved = move_previous_run(checkpoint_dir, out_weights)
        if moved:
            notes.append(f"Files of an earlier run (checkpoints, TensorBoard logs, exported weights) moved to {moved}")
    other_owner = claim_exports(out_weights, checkpoint_dir, settings_hash)
    if other_owner is not None:
        refuse_owned(out_weights, other_owner)
    return notes
