"""Opening a file a user named, only when it is a regular file of a sane size.

Opening a FIFO blocks until something writes to it, reading ``/dev/zero`` never ends, and
opening a device can act on it (a watchdog arms, a tape rewinds). So every file a command reads
by name (a recipe, a checkpoint, Inception weights, an official folder's files, a run's
records) goes through here: its ``stat`` is checked before it is opened, the open does not
block (``O_NONBLOCK``), and the opened file is checked again with ``fstat``, in case the name
was replaced in between. A size limit, when given, is checked before a byte is read, so a
10 MB "recipe" is refused at once rather than parsed. The errors say what the thing is: a FIFO,
a device, a folder, a symbolic link loop, a link to nothing.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.mkfifo(os.path.join(folder, "pipe.toml"))
    >>> try:
    ...     read_regular_file(os.path.join(folder, "pipe.toml"), what="recipe", max_bytes=1 << 20)
    ... except ImtransError as exc:
    ...     print(str(exc).rsplit(" is ", 1)[1])
    a FIFO (named pipe), not a regular file
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from imtrans.core.open_flags import open_flags
from imtrans.errors import DataError, ImtransError

__all__ = ["check_regular_file", "describe_kind", "open_regular_file", "read_regular_file",
           "size_text", "why_not_folder", "why_unreachable"]

#: What a file whose ``st_mode`` is not a regular file is, in words.
_KINDS = ((stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file"),
          (stat.S_ISSOCK, "is a socket, not a regular file"),
          (stat.S_ISCHR, "is a character device, not a regular file"),
          (stat.S_ISBLK, "is a block device, not a regular file"),
          (stat.S_ISDIR, "is a folder, not a file"))


def describe_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` is when it is not a regular file (``"is a FIFO (named pipe),
    not a regular file"``), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "is not a regular file")


def size_text(count: float) -> str:
    """``count`` bytes in the largest binary unit that keeps it at 1 or more, for messages.

    >>> size_text(1000), size_text(3 * 2**30), size_text(2**60)
    ('1,000 bytes', '3.0 GiB', '1,024.0 PiB')
    """
    value, unit = float(count), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{int(value):,} bytes" if unit == "bytes" else f"{value:,.1f} {unit}"


def why_unreachable(path: Path | str, exc: OSError) -> str:
    """Why ``os.stat``/``os.open`` of ``path`` failed with ``exc``, as the end of a sentence
    about it: ``"does not exist"``, ``"is a symbolic link loop ..."``, ``"is a symbolic link
    to X, which does not exist"``..."""
    if exc.errno == errno.ENOENT:
        try:
            if os.path.islink(path):
                return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        except OSError:
            pass
        return "does not exist"
    reasons = {errno.ELOOP: "is a symbolic link loop (or a chain of more than 40 links)",
               errno.EACCES: "is not readable: permission denied",
               errno.ENOTDIR: "does not exist: a part of its path is a file, not a folder",
               errno.ENAMETOOLONG: "has a name too long for the file system",
               errno.ENXIO: "is a device or socket that cannot be opened"}
    return reasons.get(exc.errno or 0, f"cannot be read: {exc.strerror or exc}")


def why_not_folder(path: Path | str) -> str | None:
    """Why ``path`` (links followed) is not a folder, as the end of a sentence about it
    (``"does not exist"``, ``"is a FIFO (named pipe), not a folder"``, ``"is a symbolic link
    loop ..."``), or None when it is one."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return why_unreachable(path, exc)
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISREG(mode):
        return "is a file, not a folder"
    kind = describe_kind(mode) or "is not a folder"
    return kind.replace("not a regular file", "not a folder")


def _unreadable(what: str, path: Path, exc: OSError, missing: str | None,
                error: type[ImtransError]) -> ImtransError:
    """Why ``os.stat``/``os.open`` failed on ``path``, as an error of class ``error``."""
    reason = why_unreachable(path, exc)
    if reason == "does not exist" and missing:
        return error(missing)
    return error(f"{what} {path} {reason}")


def check_regular_file(path: Path | str, *, what: str, max_bytes: int | None = None,
                       error: type[ImtransError] = DataError,
                       missing: str | None = None) -> os.stat_result:
    """Refuse ``path`` unless it is a regular file (links followed) of at most ``max_bytes``.

    For files a library opens by name itself (safetensors, ``torch.load``): nothing is opened
    here. Prefer :func:`open_regular_file`, which also checks the file it opened.

    Args:
        path: The file a user named.
        what: What it should be, for the message (``"recipe"``, ``"checkpoint"``).
        max_bytes: The largest size accepted; ``None`` for no limit.
        error: The error class to raise.
        missing: The whole message when nothing is there (default: ``<what> <path> does not
            exist``).

    Returns:
        The file's ``stat``.

    Raises:
        ImtransError: of class ``error``, saying what ``path`` is instead.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _unreadable(what, path, exc, missing, error) from None
    _check_stat(path, info, what, max_bytes, error)
    return info


def _check_stat(path: Path, info: os.stat_result, what: str, max_bytes: int | None,
                error: type[ImtransError]) -> None:
    kind = describe_kind(info.st_mode)
    if kind is not None:
        raise error(f"{what} {path} {kind}")
    if max_bytes is not None and info.st_size > max_bytes:
        raise error(f"{what} {path} is {size_text(info.st_size)}; a {what} is at most "
                    f"{size_text(max_bytes)}, so this is not one (refused before reading it)")


def open_regular_file(path: Path | str, *, what: str, max_bytes: int | None = None,
                      error: type[ImtransError] = DataError,
                      missing: str | None = None) -> BinaryIO:
    """Open ``path`` for reading in binary, only when it is a regular file of sane size.

    The ``stat`` is checked first, then the file is opened without blocking and checked again
    from the open handle (``fstat``), so a name swapped for a FIFO in between is still refused.

    Args:
        path: The file a user named.
        what: What it should be, for the message.
        max_bytes: The largest size accepted; ``None`` for no limit.
        error: The error class to raise.
        missing: The whole message when nothing is there (see :func:`check_regular_file`).

    Returns:
        The open file (blocking reads again: a regular file never blocks).

    Raises:
        ImtransError: of class ``error``, saying what ``path`` is instead.
    """
    path = Path(path)
    check_regular_file(path, what=what, max_bytes=max_bytes, error=error, missing=missing)
    non_blocking = open_flags("O_NONBLOCK")  # POSIX only; Windows has no FIFOs to block on
    try:
        fd = os.open(path, os.O_RDONLY | non_blocking | open_flags("O_BINARY"))
    except OSError as exc:
        raise _unreadable(what, path, exc, missing, error) from None
    try:
        _check_stat(path, os.fstat(fd), what, max_bytes, error)
        if non_blocking:  # (Windows' set_blocking, from Python 3.12, takes pipes only)
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: Path | str, *, what: str, max_bytes: int,
                      error: type[ImtransError] = DataError, missing: str | None = None) -> bytes:
    """The bytes of ``path``, a regular file of at most ``max_bytes`` (see
    :func:`open_regular_file`). A file that grows past the limit while it is read is refused
    too.

    Raises:
        ImtransError: of class ``error``: not a regular file, too large, or unreadable.
    """
    with open_regular_file(path, what=what, max_bytes=max_bytes, error=error,
                           missing=missing) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise error(f"{what} {path} grew past {size_text(max_bytes)} while it was read; "
                    f"a {what} is at most that")
    return data
