"""The git commit of the working directory, read from files: git itself is never run.

A run records the commit of the checkout it was started in (``environment.json``). Running
``git`` there would run whatever that checkout's ``.git/config`` asks for (``core.fsmonitor``,
``core.pager``, ``diff.external``, ``filter.*``, hooks...), and that folder may be anybody's.
So the commit is read as files: ``.git`` is searched for from the working directory upward
(a ``.git`` file of a worktree or submodule names its real folder with ``gitdir:``), then
``HEAD``, the ref it names (``refs/heads/main``) and ``packed-refs`` are read, each checked to
be a regular file of bounded size first (a FIFO named ``HEAD`` cannot block a run). Whether the
checkout has uncommitted changes is not recorded: telling that needs git's index and filters,
which is what must not run.

Example:
    >>> head_commit("/")  # no checkout above the root  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from imtrans.core.regular_files import open_regular_file, read_regular_file
from imtrans.errors import ImtransError

__all__ = ["head_commit"]

_SMALL = 4096  # HEAD, a loose ref and a .git file are one line
_PACKED_REFS_LIMIT = 256 << 20  # packed-refs of the largest repositories are tens of MB
_MAX_LEVELS = 256  # folders walked up from the working directory
_MAX_SYMREFS = 5  # HEAD -> refs/heads/x -> ...: git itself stops at 5
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names
_REF = re.compile(r"refs/[A-Za-z0-9._/+@-]{1,1000}")


def _small_text(path: Path) -> str | None:
    """The first line of a small regular file, or None when it is anything else."""
    try:
        data = read_regular_file(path, what="git file", max_bytes=_SMALL)
    except ImtransError:
        return None
    return data.decode("utf-8", "replace").split("\n", 1)[0].strip()


def _git_dir(start: Path) -> Path | None:
    """The git folder of the checkout holding ``start``: ``.git`` found upward, a ``gitdir:``
    file followed."""
    folder = start
    for _ in range(_MAX_LEVELS):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
            line = _small_text(dot_git)
            if line is None or not line.startswith("gitdir:"):
                return None
            target = Path(line.removeprefix("gitdir:").strip())
            target = target if target.is_absolute() else folder / target
            return target if target.is_dir() else None
        if os.path.lexists(dot_git):  # a FIFO, a dangling link: no checkout to read
            return None
        if folder.parent == folder:
            return None
        folder = folder.parent
    return None


def _common_dir(git_dir: Path) -> Path:
    """Where the branches live: a linked worktree's ``commondir``, else ``git_dir``."""
    line = _small_text(git_dir / "commondir")
    if not line:
        return git_dir
    common = Path(line)
    common = common if common.is_absolute() else git_dir / common
    return common if common.is_dir() else git_dir


def _packed_ref(common: Path, ref: str) -> str | None:
    """The commit ``ref`` has in ``packed-refs``, read line by line with a size bound."""
    try:
        handle = open_regular_file(common / "packed-refs", what="git file",
                                   max_bytes=_PACKED_REFS_LIMIT)
    except ImtransError:
        return None
    wanted = ref.encode()
    with handle:
        for line in handle:
            fields = line.split()
            if len(fields) == 2 and fields[1] == wanted:
                commit = fields[0].decode("ascii", "replace")
                return commit if _COMMIT.fullmatch(commit) else None
    return None


def head_commit(start: Path | str | None = None) -> str | None:
    """The commit ``HEAD`` names in the git checkout holding ``start`` (default: the working
    directory), read from files; None outside a checkout, on an unborn branch, or when the
    files are unreadable or in a format this does not read (reftable).

    Example:
        >>> head_commit()  # doctest: +SKIP
        'd7231d1e0c...'
    """
    try:
        folder = Path(start) if start is not None else Path(os.getcwd())
        git_dir = _git_dir(folder.absolute())
        if git_dir is None:
            return None
        common = _common_dir(git_dir)
        value = _small_text(git_dir / "HEAD")
        for _ in range(_MAX_SYMREFS):
            if value is None:
                return None
            if _COMMIT.fullmatch(value):  # a detached HEAD, or the ref's commit
                return value
            ref = value.removeprefix("ref:").strip()
            if not value.startswith("ref:") or not _REF.fullmatch(ref) or ".." in ref:
                return None
            # Per-worktree refs (HEAD, refs/worktree/...) sit in the worktree's own folder.
            loose = next((base / ref for base in (git_dir, common) if (base / ref).is_file()),
                         None)
            value = _small_text(loose) if loose is not None else _packed_ref(common, ref)
    except (OSError, ValueError):  # a folder gone, a name the system refuses
        return None
    return None
