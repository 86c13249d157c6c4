"""Atomic file writes: a reader sees the old file or the new one whole, never a part.

Every writer of imtrans goes through :func:`atomic_write` (bytes or text it holds) or
:func:`atomic_path` (a library that writes a file by name: safetensors, torchvision, ONNX). The
new content goes to a temporary name in the same folder (so the rename cannot cross file
systems), is flushed to disk, renamed over the final name, and the folder is flushed too, so
that the rename itself survives a power cut.

Temporary names start with :data:`TEMP_PREFIX` and hold the process id and a random part, so
two processes never share one, no glob of the final names matches them, and a run can remove
what a killed process left (:func:`remove_temporaries`).

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write(folder / "best.json", '{"fid": 12.5}\\n')
    >>> (folder / "best.json").read_text()
    '{"fid": 12.5}\\n'
    >>> with atomic_path(folder / "grid.png") as partial:
    ...     _ = partial.write_bytes(b"png bytes")  # any library writing to a file name
    >>> sorted(p.name for p in folder.iterdir())
    ['best.json', 'grid.png']
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TEMP_PREFIX", "atomic_path", "atomic_write", "fsync_directory", "remove_temporaries"]

#: How every temporary file of an atomic write begins.
TEMP_PREFIX = ".tmp-"


#: Bytes of the final name a temporary name keeps: with the prefix, process id and random
#: part it stays within the 255 bytes file systems allow, however long the final name is.
_NAME_KEPT = 200


def temporary_name(path: Path) -> Path:
    """A fresh temporary name beside ``path``, unique to this process and call."""
    kept = os.fsdecode(os.fsencode(path.name)[:_NAME_KEPT])
    return path.with_name(f"{TEMP_PREFIX}{kept}-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    The body writes the whole file at the yielded path (by any means). If the body raises, the
    temporary file is removed and ``path`` is unchanged.

    Raises:
        OSError: the folder cannot be written, the disk is full, ... (``path`` unchanged).
    """
    temporary = temporary_name(path)
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` (text is written as UTF-8) to ``path`` atomically.

    Raises:
        OSError: as :func:`atomic_path`; ``path`` is then unchanged.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    # "x": a new file only, so a link planted at the temporary name is never written through.
    with atomic_path(path) as temporary, temporary.open("xb") as file:
        file.write(payload)


def fsync_directory(directory: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles: nothing more can be done
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename has still happened
    finally:
        os.close(fd)


def remove_temporaries(directory: Path) -> None:
    """Remove the temporary files a killed process left in ``directory`` (not recursive)."""
    if not directory.is_dir():
        return
    for leftover in directory.glob(f"{TEMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _fsync_file(path: Path) -> None:
    with path.open("rb") as file:
        os.fsync(file.fileno())
