"""One writer per run directory: an exclusive OS lock held for the whole run.

Two processes training into one directory would interleave their metrics, alternate their
checkpoints and delete each other's temporary files. :func:`lock_run_dir` takes an exclusive
lock on ``<run>/.imtrans.lock`` without waiting, through the ``filelock`` package's descriptor
lock: ``flock`` on Linux and macOS, ``LockFileEx`` on Windows. The operating system releases it
when the process ends, however it ends (``kill -9`` or Windows' End task included), so a lock
is never stale. The file says who holds it (process id, host, command, start time), for the
message a second process gets; the record starts at the file's second byte, since Windows
locks the first one and refuses it to every other reader.

``flock`` locks are advisory and local: every imtrans process honours them, other programs do
not, and a network file system may not carry them between machines.

Example:
    >>> with lock_run_dir(Path("runs/cyclegan")):  # doctest: +SKIP
    ...     train()
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from imtrans.core.jsonfile import loads_bounded
from imtrans.errors import ImtransError

__all__ = ["LOCK_NAME", "RunDirBusyError", "RunLock", "lock_run_dir"]

#: The lock file inside a run directory.
LOCK_NAME = ".imtrans.lock"

#: How much of the lock file is read to say who holds it.
_MAX_HOLDER_BYTES = 64 * 1024

#: Where the holder's record starts: after the byte that Windows' lock covers.
_RECORD_OFFSET = 1


class RunDirBusyError(ImtransError):
    """Another live process holds the run directory's lock."""


def _holder(handle: IO[bytes]) -> str:
    """Who holds the lock, from what its holder wrote into the file."""
    try:
        try:
            handle.seek(0)
            raw = handle.read(_MAX_HOLDER_BYTES)
        except OSError:  # Windows: the holder's lock covers the first byte
            handle.seek(_RECORD_OFFSET)
            raw = handle.read(_MAX_HOLDER_BYTES)
        # What a holder writes is a line of a few hundred bytes; more, or JSON nested deep,
        # was not written by imtrans and says nothing about the holder.
        info: dict[str, Any] = loads_bounded(raw.decode("utf-8").strip() or "{}")
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

    def __init__(self, path: Path, handle: IO[bytes]) -> None:
        self.path, self._handle = path, handle

    def release(self) -> None:
        """Free the lock, then close the file. The file stays: deleting it would let two
        processes lock two different files of one name."""
        if self._handle.closed:
            return
        from filelock import unlock_descriptor

        # Closing alone frees it too, but Windows may free a closed file's lock late.
        with contextlib.suppress(OSError):  # then the close frees it
            unlock_descriptor(self._handle.fileno())
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
    # Imported here: the commands that do not train need neither (filelock takes ~40 ms).
    from filelock import lock_descriptor

    from imtrans.runs.file_access import open_run_file

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    # Not through a link: the file is truncated and written once held (runs.file_access).
    handle = os.fdopen(open_run_file(path, os.O_RDWR | os.O_CREAT), "r+b")
    try:
        held = lock_descriptor(handle.fileno(), blocking=False)
    except BaseException:
        handle.close()
        raise
    if not held:
        holder = _holder(handle)
        handle.close()
        raise RunDirBusyError(
            f"{run_dir} is in use by {holder}: two runs writing one directory would mix their "
            "metrics and checkpoints. Wait for it to end, stop it, or train into another "
            "directory") from None
    handle.seek(0)
    handle.truncate()
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "command": ["imtrans", *sys.argv[1:]],
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    # Byte 0 is a filler: Windows' lock covers it, and no other process may read it there.
    handle.write(b"\n" + json.dumps(record).encode("utf-8"))
    handle.flush()
    return RunLock(path, handle)
