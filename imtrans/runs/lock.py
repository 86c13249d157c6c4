"""One writer per run directory: an exclusive OS lock held for the whole run.

Two processes training into one directory would interleave their metrics, alternate their
checkpoints and delete each other's temporary files. :func:`lock_run_dir` takes an exclusive
``flock`` on ``<run>/.imtrans.lock`` without waiting; the kernel releases it when the process
ends, however it ends (``kill -9`` included), so a lock is never stale. The file says who holds
it (process id, host, command, start time), for the message a second process gets.

``flock`` locks are advisory and local: every imtrans process honours them, other programs do
not, and a network file system may not carry them between machines.

Example:
    >>> with lock_run_dir(Path("runs/cyclegan")):  # doctest: +SKIP
    ...     train()
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from imtrans.errors import ImtransError
from imtrans.core.jsonfile import loads_bounded

__all__ = ["LOCK_NAME", "RunDirBusyError", "RunLock", "lock_run_dir"]

#: The lock file inside a run directory.
LOCK_NAME = ".imtrans.lock"

#: How much of the lock file is read to say who holds it.
_MAX_HOLDER_CHARS = 64 * 1024


class RunDirBusyError(ImtransError):
    """Another live process holds the run directory's lock."""


def _holder(handle: IO[str]) -> str:
    """Who holds the lock, from what its holder wrote into the file."""
    try:
        handle.seek(0)
        # What a holder writes is a line of a few hundred bytes; more, or JSON nested deep,
        # was not written by imtrans and says nothing about the holder.
        info: dict[str, Any] = loads_bounded(handle.read(_MAX_HOLDER_CHARS) or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    command = " ".join(str(part) for part in info.get("command", []))[:120]
    return (f"process {info['pid']} on {info.get('host', '?')}"
            + (f" ({command})" if command else "")
            + (f", started {info['started']}" if info.get("started") else ""))


class RunLock:
    """The held lock of one run directory; :meth:`release` (or leaving the ``with``) frees it."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path, self._handle = path, handle

    def release(self) -> None:
        """Free the lock (closing the file releases it). The file stays: deleting it would
        let two processes lock two different files of one name."""
        if not self._handle.closed:
            self._handle.close()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_dir(run_dir: Path) -> RunLock:
    """Take the exclusive lock of ``run_dir`` (created if missing) or fail at once.

    Raises:
        RunDirBusyError: a live process holds it; the message names that process.
        LinkedRunFileError: the lock file is a symbolic or hard link, or not a regular file
            (nothing is written to it).
    """
    from imtrans.runs.file_access import open_run_file

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    # Not through a link: the file is truncated and written once held (see imtrans.runs.file_access).
    handle = os.fdopen(open_run_file(path, os.O_RDWR | os.O_CREAT), "r+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(handle)
        handle.close()
        raise RunDirBusyError(
            f"{run_dir} is in use by {holder}: two runs writing one directory would mix their "
            "metrics and checkpoints. Wait for it to end, stop it, or train into another "
            "directory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "command": ["imtrans", *sys.argv[1:]],
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    handle.flush()
    return RunLock(path, handle)
