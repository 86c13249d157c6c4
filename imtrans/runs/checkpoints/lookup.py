"""Which checkpoint a path means: the one place that answers it.

A file is itself; a run directory means the newest checkpoint under its ``checkpoints/``; a
checkpoint folder its own newest. For ``imtrans run --resume``, ``latest`` also means the
newest run of the recipe's name, and ``auto`` (:func:`resume_or_start`) the run directory of
the recipe's name if it holds a checkpoint, else a start there.

Example:
    >>> find_checkpoint("runs/cyclegan")  # doctest: +SKIP
    PosixPath('runs/cyclegan/checkpoints/step_00001000.safetensors')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imtrans.core.atomic import TEMP_PREFIX
from imtrans.core.printable import printable_path
from imtrans.core.regular_files import check_regular_file, why_not_folder
from imtrans.errors import CheckpointError, RecipeError
from imtrans.runs.checkpoints.files import latest_checkpoint, parse_checkpoint_name
from imtrans.runs.checkpoints.foreign import official_folder_message
from imtrans.runs.directory import RunDir, check_run_name, latest_run_dir
from imtrans.runs.lock import LOCK_NAME
from imtrans.runs.metrics_file import read_metrics_lines

if TYPE_CHECKING:
    from imtrans.recipe import Recipe

__all__ = ["AUTO", "ResumeOrStart", "check_start_in", "find_checkpoint", "find_resume_point",
           "resume_or_start"]

#: What ``--resume`` (and ``resume=``) takes to resume the recipe's run, or start it.
AUTO = "auto"


def find_checkpoint(path: Path | str) -> Path:
    """A checkpoint file, or the newest checkpoint of a run directory or checkpoint folder.

    Raises:
        CheckpointError: nothing readable there.
    """
    found = _checkpoint_at(Path(path))
    if found is not None:
        return found
    official = official_folder_message(Path(path)) if Path(path).is_dir() else None
    if official is not None:
        raise CheckpointError(f"no checkpoint at {path}: {official}")
    for folder in (RunDir(Path(path)).checkpoints, Path(path)):  # one of a checkpoint's name that
        if folder.is_dir():  # is a FIFO or a link loop is named, not "no checkpoint"
            for entry in sorted(folder.iterdir()):
                if parse_checkpoint_name(entry.name) is not None:
                    check_regular_file(entry, what="checkpoint", error=CheckpointError)
    raise CheckpointError(f"no checkpoint at {path} (expected a .safetensors file or a run "
                          "directory holding checkpoints/step_*.safetensors)")


def find_resume_point(resume: str, recipe: Recipe) -> Path:
    """The checkpoint ``--resume`` means: ``latest`` (the newest run of this recipe's name),
    a run directory, a checkpoint folder or a checkpoint file.

    Raises:
        CheckpointError: nothing to resume from there, with where it looked.
    """
    if resume == "latest":
        name = recipe.run.name or recipe.trainer.name
        run_dir = latest_run_dir(Path(recipe.run.output_dir), name)
        if run_dir is None:
            raise CheckpointError(f"no run named {name!r} under {recipe.run.output_dir}/ to "
                                  "resume; start one without --resume")
        target = run_dir
    else:
        target = Path(resume)
    found = _checkpoint_at(target)
    if found is not None:
        return found
    official = official_folder_message(target) if target.is_dir() else None
    if official is not None:
        raise CheckpointError(f"no checkpoint found at {target}: {official}")
    raise CheckpointError(f"no checkpoint found at {target} (looked for "
                          f"{target}/checkpoints/step_*.safetensors)")


@dataclass(frozen=True)
class ResumeOrStart:
    """What ``--resume auto`` found: the run directory, and the checkpoint to resume there
    (None: the run starts in it)."""

    run_dir: Path
    checkpoint: Path | None


def resume_or_start(recipe: Recipe, run_dir: Path | None = None) -> ResumeOrStart:
    """``--resume auto``: the newest checkpoint of the recipe's run directory, or none (start).

    The run directory is ``run_dir``, else ``run.output_dir/run.name`` (the trainer's name
    when ``run.name`` is unset), and never a ``-2`` beside it: the same command, rerun by a
    job scheduler or ``torchrun --max-restarts``, continues the same run. Every process of a
    run finds the same answer, since nothing there is written before they have all started.

    Raises:
        CheckpointError: a newer checkpoint there is not a regular file.
        RecipeError: a directory there in which no run may start (it is not a run directory;
            see :func:`check_start_in`).
    """
    if run_dir is None:
        run_dir = Path(recipe.run.output_dir) / check_run_name(recipe.run.name
                                                               or recipe.trainer.name)
    checkpoints = RunDir(run_dir).checkpoints
    found = latest_checkpoint(checkpoints) if checkpoints.is_dir() else None
    if found is not None:
        _refuse_newer_that_are_not_files(checkpoints, found)
        return ResumeOrStart(run_dir, found)
    check_start_in(run_dir)  # refused now, before any process starts
    return ResumeOrStart(run_dir, None)


def check_start_in(run_dir: Path) -> str | None:
    """Whether a new run may start in ``run_dir`` as it is (``--resume auto`` found no
    checkpoint there); return what starting over in it replaces, or None when it holds
    nothing (missing, or empty but for the lock a run takes first).

    A run stopped before its first checkpoint left its record (``recipe.toml``), maybe metrics,
    sample grids and ``train.log``: the new run starts over at step 0 in the same directory,
    so its records are dropped (it writes them again), its grids are overwritten as it
    reaches their steps and ``train.log`` goes on. Files of other programs stay untouched.

    Raises:
        RecipeError: ``run_dir`` is not a folder, holds a checkpoint (a run to resume, which a
            start would mix with its own), or holds files but no run record (not a run
            directory: nothing in it is touched).
    """
    run, shown = RunDir(run_dir), printable_path(run_dir)
    if not os.path.lexists(run_dir):
        return None
    reason = why_not_folder(run_dir)
    if reason is not None:
        raise RecipeError(f"{shown} {reason}: a run cannot start there; move it, or choose "
                          "another run.name")
    held = sorted(entry.name for entry in run.checkpoints.iterdir()
                  if not entry.name.startswith(TEMP_PREFIX)) if run.checkpoints.is_dir() else []
    if held or (os.path.lexists(run.checkpoints) and not run.checkpoints.is_dir()):
        what = ", ".join(held[:3]) if held else "checkpoints is not a folder"
        raise RecipeError(f"{shown} holds a run's checkpoints ({what}): starting a new run "
                          "there would mix two histories; resume it (--resume auto, or "
                          f"--resume {shown}), or choose another run.name")
    entries = [entry for entry in run_dir.iterdir()
               if entry.name != LOCK_NAME and not entry.name.startswith(TEMP_PREFIX)]
    if not entries:
        return None
    if not run.recipe.is_file():
        raise RecipeError(f"{shown} exists and holds files but no run record (recipe.toml): it "
                          "is not a run directory imtrans can start over in, and nothing in it "
                          "is touched; move it, or choose another run.name")
    return _what_a_start_over_replaces(run)


def _what_a_start_over_replaces(run: RunDir) -> str:
    """The note of a start over in ``run``: what of the stopped run goes."""
    records = sum(1 for line in read_metrics_lines(run.metrics)
                  if line.record is not None and line.record["step"] > 0)
    grids = len(list(run.samples.glob("step_*.png"))) if run.samples.is_dir() else 0
    replaced = [f"drops the {records} record{'s' if records != 1 else ''} of metrics.jsonl "
                "(the run writes them again)"] if records else []
    replaced += [f"overwrites the {grids} sample grid{'s' if grids != 1 else ''} as it "
                 "reaches their steps"] if grids else []
    return (f"{printable_path(run.root)} holds no checkpoint (its run stopped before the "
            "first): the run starts over in it at step 0"
            + (f": it {' and '.join(replaced)}" if replaced else "")
            + "; train.log goes on")


def _checkpoint_at(path: Path) -> Path | None:
    """``path`` if it is a file, else the newest checkpoint of the run directory ``path`` or of
    the checkpoint folder ``path``; None when there is none."""
    if path.is_file():
        return path
    if os.path.lexists(path) and not path.is_dir():
        # A FIFO, a device, a link loop or a link to nothing: say which, not "no checkpoint".
        check_regular_file(path, what="checkpoint", error=CheckpointError)
    for folder in (RunDir(path).checkpoints, path):
        found = latest_checkpoint(folder) if folder.is_dir() else None
        if found is not None:
            _refuse_newer_that_are_not_files(folder, found)
            return found
    return None


def _refuse_newer_that_are_not_files(folder: Path, found: Path) -> None:
    """Name a newer checkpoint than ``found`` that is not a regular file (a FIFO, a link to
    nothing, a folder): taking ``found`` instead would silently go back further than the
    user expects."""
    parsed = parse_checkpoint_name(found.name)
    step = parsed[0] if parsed is not None else -1
    for entry in folder.iterdir():
        newer = parse_checkpoint_name(entry.name)
        if newer is not None and newer[0] > step and not entry.is_file():
            check_regular_file(entry, what="checkpoint", error=CheckpointError)
