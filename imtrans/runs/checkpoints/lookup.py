"""Which checkpoint a path means: the one place that answers it.

A file is itself; a run directory means the newest checkpoint under its ``checkpoints/``; a
checkpoint folder its own newest. For ``imtrans run --resume``, ``latest`` also means the
newest run of the recipe's name.

Example:
    >>> find_checkpoint("runs/cyclegan")  # doctest: +SKIP
    PosixPath('runs/cyclegan/checkpoints/step_00001000.safetensors')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from imtrans.core.regular_files import check_regular_file
from imtrans.errors import CheckpointError
from imtrans.runs.checkpoints.files import latest_checkpoint, parse_checkpoint_name
from imtrans.runs.checkpoints.foreign import official_folder_message
from imtrans.runs.directory import RunDir, latest_run_dir

if TYPE_CHECKING:
    from imtrans.recipe import Recipe

__all__ = ["find_checkpoint", "find_resume_point"]


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
