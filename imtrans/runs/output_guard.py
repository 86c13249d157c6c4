"""Outputs replace only what the command itself wrote, and never a run directory's files.

:func:`refuse_overwrite` (:mod:`imtrans.core.paths`) keeps a command's outputs off its own inputs.
Two more rules hold for every file a command writes where the user says (``translate``,
``export -o``, ``report -o``, ``eval --save-images``, ``data combine``), checked before any
work by :func:`guard_outputs`:

1. **An existing file is replaced only if this command wrote it.** Each command notes what it
   writes in a small record beside its outputs (:data:`RECORD_NAME`, one JSON line per file:
   its name, size, modification time and inode). An output that exists and is not in the
   record as it is now (another file, or one the user replaced or edited since) is refused,
   unless the user passes ``--overwrite``. So running a command again into the same place
   works, and a photo that happens to carry an output's name is never lost.
2. **No output is a run directory's file**: its recipe, environment, metrics, log, lock,
   report, samples, checkpoints, evaluations or TensorBoard files, whichever path, symbolic
   link or mount reaches it (a run directory is recognised by what it holds, not by its
   path). ``--overwrite`` does not lift this. Outputs are written under a temporary name and
   renamed, so a hard link to a run's file elsewhere keeps its bytes: the rename replaces
   the name, never the file.

Example:
    >>> record = guard_outputs([Path("out/a.png")], Path("out"), "translate")  # doctest: +SKIP
    >>> ...  # write out/a.png  # doctest: +SKIP
    >>> record.add(Path("out/a.png"))  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imtrans.core.atomic import atomic_write
from imtrans.core.jsonfile import loads_bounded
from imtrans.core.open_flags import open_flags
from imtrans.core.paths import real_path
from imtrans.core.regular_files import describe_kind, why_not_folder
from imtrans.errors import DataError, ImtransError
from imtrans.runs.directory import RunDir
from imtrans.runs.lock import LOCK_NAME

__all__ = ["RECORD_NAME", "OutputRecord", "guard_outputs", "refuse_run_file", "run_file_of"]

#: The record of what imtrans commands wrote into a folder.
RECORD_NAME = ".imtrans-outputs.jsonl"

#: The first line of a record: a file of that name without it is not ours.
_HEADER = {"imtrans_outputs": 1}

#: A record is compacted (rewritten with one line per file) past this many extra lines.
_SLACK = 64


def _run_entries() -> frozenset[str]:
    """The names directly inside a run directory that belong to the run (its ``export/``
    folder excepted: that is where exports go)."""
    run = RunDir(Path())
    return frozenset(path.name for path in (
        run.recipe, run.environment, run.metrics, run.train_log, run.samples, run.checkpoints,
        run.evaluations, run.report)) | {LOCK_NAME, "tb"}


_RUN_ENTRIES = _run_entries()


class _RunDirs:
    """Which folders are run directories, each looked at once."""

    def __init__(self) -> None:
        self._known: dict[Path, bool] = {}

    def __call__(self, folder: Path) -> bool:
        known = self._known.get(folder)
        if known is None:
            run = RunDir(folder)
            known = self._known[folder] = (
                os.path.lexists(folder / LOCK_NAME) or run.recipe.is_file()
                or os.path.lexists(run.metrics) or run.checkpoints.is_dir())
        return known


def run_file_of(path: Path, is_run_dir: _RunDirs | None = None) -> tuple[Path, str] | None:
    """The run directory ``path`` is a file of, and which, or ``None``.

    ``path`` is followed through symbolic links; each folder above it is recognised as a run
    directory by what it holds (a lock, ``recipe.toml``, ``metrics.jsonl`` or
    ``checkpoints/``), so a second path or a mount of a run directory is recognised too.
    """
    is_run_dir = is_run_dir or _RunDirs()
    for candidate in dict.fromkeys((Path(os.path.abspath(path)), real_path(path))):
        for folder in candidate.parents:
            relative = candidate.relative_to(folder)
            if relative.parts[0] in _RUN_ENTRIES and is_run_dir(folder):
                return folder, relative.parts[0]
    return None


def refuse_run_file(output: Path, error: type[ImtransError] = DataError,
                    is_run_dir: _RunDirs | None = None) -> None:
    """Raise ``error`` when ``output`` is a run directory's file (rule 2 of the module
    docstring): ``--overwrite`` does not lift it."""
    owner = run_file_of(output, is_run_dir)
    if owner is not None:
        run, entry = owner
        raise error(f"output {output} would replace {entry} of the run directory {run}; a "
                    "run's files are never written by another command, --overwrite or not: "
                    "choose an output outside the run directory")


class OutputRecord:
    """What imtrans commands wrote into one folder (see the module docstring, rule 1)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / RECORD_NAME
        self._entries: dict[str, dict[str, Any]] = {}
        self._lines = 0
        self.foreign = False  # a file of the record's name that imtrans did not write
        self._load()

    def _key(self, path: Path) -> str:
        return os.fsdecode(os.path.relpath(os.path.abspath(path), os.path.abspath(self.folder)))

    def _load(self) -> None:
        try:
            status = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError:
            self.foreign = True
            return
        if not stat.S_ISREG(status.st_mode):
            self.foreign = True  # a link, FIFO or folder of that name: never ours
            return
        try:
            # (Windows has neither flag, nor FIFOs; the lstat above refused a link.)
            flags = open_flags("O_NOFOLLOW", "O_NONBLOCK", "O_BINARY")
            fd = os.open(self.path, os.O_RDONLY | flags)
            with os.fdopen(fd, "rb") as file:
                lines = file.read(64 << 20).splitlines()
        except OSError:
            self.foreign = True
            return
        if not lines or _parse(lines[0]) != _HEADER:
            self.foreign = True
            return
        for line in lines[1:]:
            entry = _parse(line)
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                self._entries[entry["path"]] = entry
        self._lines = len(lines) - 1

    def wrote(self, path: Path) -> bool:
        """Whether ``path`` is, as it is now, a file a command recorded writing here."""
        entry = self._entries.get(self._key(path))
        try:
            status = os.lstat(path)
        except OSError:
            return False
        return (entry is not None and stat.S_ISREG(status.st_mode)
                and entry.get("size") == status.st_size
                and entry.get("mtime_ns") == status.st_mtime_ns
                and entry.get("inode") == status.st_ino)

    def compact(self) -> None:
        """Rewrite the record with one line per file still there, when it has grown long."""
        if self.foreign or self._lines <= len(self._entries) + _SLACK:
            return
        kept = [entry for key, entry in self._entries.items()
                if self.wrote(Path(self.folder, key))]
        atomic_write(self.path, "".join(json.dumps(line) + "\n" for line in [_HEADER, *kept]))
        self._entries = {entry["path"]: entry for entry in kept}
        self._lines = len(kept)

    def add(self, path: Path, command: str) -> None:
        """Note that ``command`` just wrote ``path`` (appended, never through a link)."""
        status = os.lstat(path)
        key = self._key(path)
        entry = {"path": key, "size": status.st_size,
                 "mtime_ns": status.st_mtime_ns, "inode": status.st_ino, "command": command}
        if self.foreign:
            # The user allowed replacing it (--overwrite): start a record of our own.
            atomic_write(self.path, json.dumps(_HEADER) + "\n")
            self.foreign, self._lines = False, 0
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        fd = os.open(self.path, flags | open_flags("O_NOFOLLOW", "O_CLOEXEC", "O_BINARY"), 0o644)
        with os.fdopen(fd, "ab") as file:
            if os.fstat(file.fileno()).st_size == 0:
                file.write((json.dumps(_HEADER) + "\n").encode())
            file.write((json.dumps(entry) + "\n").encode())
        self._entries[key] = entry
        self._lines += 1


def _parse(line: bytes) -> Any:
    try:
        return loads_bounded(line)
    except ValueError:  # not JSON, or nested deeper than any record: not a record line
        return None


def guard_outputs(outputs: Iterable[Path], folder: Path, command: str, *,
                  overwrite: bool = False, error: type[ImtransError] = DataError
                  ) -> OutputRecord:
    """Refuse, before any work, outputs that break either rule of the module docstring.

    Args:
        outputs: Every file the command may write.
        folder: Where the record of the command's outputs is kept (the output folder, or the
            folder of a single output file).
        command: The command, as the user types it (``translate``, ``export``...).
        overwrite: The user's ``--overwrite``: existing files that are not the command's own
            outputs may be replaced (a run directory's files still may not).
        error: The exception class to raise (the command's own kind of error).

    Returns:
        The folder's record; call :meth:`OutputRecord.add` after writing each output.

    Raises:
        ImtransError: (``error``) an output is a run directory's file, is a folder, or exists
            and was not written by ``command`` (without ``overwrite``).
    """
    record = OutputRecord(folder)
    is_run_dir = _RunDirs()
    for output in [*outputs, record.path]:
        refuse_run_file(output, error, is_run_dir)
        if output == record.path:
            continue
        try:
            status = os.lstat(output)
        except FileNotFoundError:
            continue
        except OSError as exc:
            # A folder above it that is a FIFO or a file: said, not "Not a directory".
            blocker = next((folder for folder in output.parents if os.path.lexists(folder)
                            and why_not_folder(folder) is not None), None)
            if exc.errno == errno.ENOTDIR and blocker is not None:
                raise error(f"output {output} cannot be written: {blocker} "
                            f"{why_not_folder(blocker)}") from None
            raise error(f"cannot check output {output}: {exc.strerror or exc}") from None
        if stat.S_ISDIR(status.st_mode):
            raise error(f"output {output} is a folder; choose another output")
        kind = None if stat.S_ISLNK(status.st_mode) else describe_kind(status.st_mode)
        if kind is not None:  # a device, FIFO or socket: a rename would replace the node
            raise error(f"output {output} {kind}; --overwrite or not, choose the name of "
                        "a file to write")
        if not overwrite and not record.wrote(output):
            raise error(f"output {output} exists and imtrans {command} did not write it: "
                        "refusing to replace it; --overwrite lets it replace it, or choose "
                        "another output")
    if record.foreign and not overwrite:
        raise error(f"{record.path} exists and is not a record imtrans wrote: refusing to "
                    "replace it; --overwrite lets it replace it, or choose another output")
    record.compact()
    return record
