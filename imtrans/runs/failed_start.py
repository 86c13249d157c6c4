"""A run directory made by a start that failed, removed again when it holds nothing of value.

A start makes its run directory before its first step: the lock, ``recipe.toml``,
``environment.json``, ``train.log``, an empty ``samples/``, and on a failure the report of a
run with no records. Left there, such a directory makes the retry of the same command take the
next name (``runs/NAME-2``) for no gain. :func:`discard_failed_start` removes it when it holds
nothing else: no checkpoint, no metrics record, no sample grid, and no file of another program
(a tracker's folder, say). Only the caller knows that it made the directory in this start; it
never calls this for a directory that existed before, nor for a resume.

Example:
    >>> kept = discard_failed_start(Path("runs/cyclegan"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from imtrans.core.atomic import TEMP_PREFIX
from imtrans.core.printable import printable_path
from imtrans.errors import ImtransError
from imtrans.runs.directory import RunDir
from imtrans.runs.lock import LOCK_NAME, RunDirBusyError, lock_run_dir

__all__ = ["discard_failed_start", "failed_start_note"]

#: Files a start writes whatever happens, and the report of a run that recorded nothing: none
#: of them holds anything a later run could use.
_START_FILES = frozenset({"recipe.toml", "environment.json", "train.log", "report.html",
                          LOCK_NAME})
#: Folders a start makes: of value only when something is in them.
_START_FOLDERS = frozenset({"samples", "checkpoints"})


def discard_failed_start(run_dir: Path, outermost: Path | None = None) -> list[str]:
    """Remove ``run_dir`` if it holds nothing of value; return what it holds of value.

    ``run_dir`` must be a directory this process made for a start that failed. It is removed
    under its lock, so a process that took the lock meanwhile keeps it (and it is kept).
    ``outermost``: a folder above it that the start made too (``run.output_dir``), removed
    with the folders between while they are empty.

    Returns:
        The names of what made it worth keeping (``checkpoints/``, ``metrics.jsonl``, a
        tracker's folder...); empty when it was removed (or is already gone).
    """
    if not os.path.lexists(run_dir):
        return []
    try:
        lock = lock_run_dir(run_dir)
    except RunDirBusyError:
        return [f"{LOCK_NAME} (another process holds it)"]
    except (OSError, ImtransError):  # a lock file that is a link: nothing is touched
        return ["(it could not be locked)"]
    with lock:
        try:
            valuable = _of_value(run_dir)
            if valuable:
                return valuable
            for entry in run_dir.iterdir():
                if entry.name == LOCK_NAME:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            # The lock file last, while it is held: a process that opens it now finds it gone
            # with the folder (the lock's "the file stays" is for a run directory that stays).
            (run_dir / LOCK_NAME).unlink(missing_ok=True)
        except OSError as exc:  # the error being reported matters more than this clean-up
            return [f"(it could not be removed: {exc.strerror or exc})"]
    try:
        run_dir.rmdir()
    except OSError:  # something arrived meanwhile: it is no longer only this start's
        try:
            arrived = sorted(entry.name for entry in run_dir.iterdir())
        except OSError:
            arrived = []
        return arrived or ["(it could not be removed)"]
    folder = run_dir
    while outermost is not None and folder != outermost and outermost in folder.parents:
        folder = folder.parent
        try:
            folder.rmdir()
        except OSError:  # another run's directory is there: the folder stays
            break
    return []


def failed_start_note(run_dir: Path, kept: list[str]) -> str:
    """The end of the error line of a failed start: what was left behind, if anything."""
    shown = printable_path(run_dir)
    if not kept:
        return (f"nothing was left behind ({shown}, made by this start, held no checkpoint "
                "and no metrics and was removed)")
    return f"{shown} was kept: it holds {', '.join(kept[:4])}"


def _of_value(run_dir: Path) -> list[str]:
    """What in ``run_dir`` a start that recorded nothing does not write."""
    run = RunDir(run_dir)
    found = []
    for entry in sorted(run_dir.iterdir(), key=lambda e: e.name):
        name = entry.name
        if name.startswith(TEMP_PREFIX):  # a write the failure cut short
            continue
        if entry.is_symlink():
            found.append(name)
        elif name in _START_FILES and entry.is_file():
            continue
        elif name in _START_FOLDERS and entry.is_dir():
            held = [e for e in entry.iterdir() if not e.name.startswith(TEMP_PREFIX)]
            if held:
                found.append(f"{name}/")
        elif entry == run.metrics and entry.is_file():
            if entry.stat().st_size:
                found.append(name)
        else:
            found.append(f"{name}/" if entry.is_dir() else name)
    return found
