"""Files imtrans writes inside a run directory are never written through a link.

Most files of a run are written under a temporary name and renamed (:mod:`imtrans.core.atomic`): a
rename replaces a link at the final name, it never writes into what the link points to. Three
files are written in place instead: the lock (``.imtrans.lock``, truncated once held), and the
appended ``metrics.jsonl`` and ``train.log``. A symbolic link there would make a run truncate
or append to a file anywhere (a user's notes, a system file), and a hard link would do the
same to the file's other names. So they are opened only through :func:`open_run_file`:
``O_NOFOLLOW`` (a symbolic link is refused by the kernel itself), then the opened file must be
a regular file with one name, checked on the open descriptor before a byte is written.

The run's folders (``samples/``, ``checkpoints/``, ``eval/``, ``tb/``) must be real folders,
not links to elsewhere: :func:`check_run_dir` refuses a run directory whose folders or
in-place files are links before training writes anything. (The run directory itself may be a
link, say to a larger disk: only what lies inside it is checked.)

Example:
    >>> with append_text(Path("runs/x/train.log")) as log:  # doctest: +SKIP
    ...     log.write("a line\\n")
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import TextIO

from imtrans.core.open_flags import open_flags
from imtrans.core.printable import printable_path
from imtrans.errors import ImtransError
from imtrans.runs.directory import RunDir

__all__ = ["LinkedRunFileError", "append_text", "check_run_dir", "open_run_file",
           "refuse_linked_folder"]


class LinkedRunFileError(ImtransError):
    """A file or folder imtrans writes in a run directory is a link, or not a regular file."""


def _refusal(path: Path, what: str) -> LinkedRunFileError:
    return LinkedRunFileError(
        f"{printable_path(path)} is {what}: imtrans never writes a run directory's files "
        "through a link; remove it (the run then writes a new one) or train into another "
        "directory")


def _link_text(path: Path) -> str:
    try:
        return f"a symbolic link (to {printable_path(os.readlink(path))})"
    except OSError:
        return "a symbolic link"


def open_run_file(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags)`` that refuses links: the descriptor of a regular file with one
    name, opened in binary mode.

    Where the platform has no ``O_NOFOLLOW`` (Windows), a symbolic link is refused from
    ``lstat`` before the open, and the opened file must be the one that then has the name
    (not a link's target), before a byte is written.

    Raises:
        LinkedRunFileError: ``path`` is a symbolic link, a hard link (a file with other
            names), a FIFO, a device or a folder.
        OSError: the system's own failure (a full disk, no permission).
    """
    no_follow, non_blocking = open_flags("O_NOFOLLOW"), open_flags("O_NONBLOCK")
    if not no_follow:
        _refuse_symbolic_link(path)
    try:
        fd = os.open(path, flags | no_follow | non_blocking
                     | open_flags("O_CLOEXEC", "O_BINARY"), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise _refusal(path, _link_text(path)) from None
        # A FIFO without reader, a folder (Windows says "permission denied" for a folder).
        if exc.errno in (errno.ENXIO, errno.EISDIR) or os.path.isdir(path):
            raise _refusal(path, "not a regular file") from None
        raise
    try:
        status = os.fstat(fd)
        if not no_follow:
            _refuse_symbolic_link(path)
            if not os.path.samestat(status, os.lstat(path)):
                raise _refusal(path, "replaced while it was opened")
        if not stat.S_ISREG(status.st_mode) or status.st_nlink > 1:
            raise _refusal(path, "not a regular file" if not stat.S_ISREG(status.st_mode)
                           else f"a hard link (a file with {status.st_nlink} names)")
        if non_blocking:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refuse_symbolic_link(path: Path) -> None:
    try:
        is_link = stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return
    if is_link:
        raise _refusal(path, _link_text(path))


def append_text(path: Path) -> TextIO:
    """``path`` opened to append UTF-8 text, created if missing (see :func:`open_run_file`)."""
    fd = open_run_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(fd, "a", encoding="utf-8")


def refuse_linked_folder(folder: Path) -> None:
    """Refuse a run directory's folder (``eval/``, ``samples/``...) that is a symbolic link,
    before a command writes into it.

    Raises:
        LinkedRunFileError: naming the link and its target.
    """
    if folder.is_symlink():
        raise _refusal(folder, _link_text(folder))


def check_run_dir(root: Path) -> None:
    """Refuse a run directory whose folders are links, or whose in-place files are links
    (symbolic or hard) or not regular files, before anything is written there.

    Raises:
        LinkedRunFileError: naming the first such file or folder.
    """
    run = RunDir(root)
    for folder in (run.samples, run.checkpoints, run.evaluations, root / "tb"):
        refuse_linked_folder(folder)
    for path in (run.metrics, run.train_log):
        try:
            status = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(status.st_mode):
            raise _refusal(path, _link_text(path))
        if not stat.S_ISREG(status.st_mode):
            raise _refusal(path, "not a regular file")
        if status.st_nlink > 1:
            raise _refusal(path, f"a hard link (a file with {status.st_nlink} names)")
