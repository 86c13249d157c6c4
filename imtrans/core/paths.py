"""Checks that a command's outputs never replace or feed back into its inputs.

Every command that writes files (``translate``, ``export``, ``eval --save-images``, ``data
combine``, ``report``) calls :func:`refuse_overwrite` with what it reads and what it will write,
before it does any work. Paths are compared as the file system sees them: symbolic links are
followed (:func:`os.path.realpath`) and an existing output is also compared by device and inode
with each input, so a hard link or a second name of the same file is caught too.

Example:
    >>> from pathlib import Path
    >>> refuse_overwrite([Path("photos/a.jpg")], [Path("out/a.jpg")], trees=[Path("photos")])
    >>> try:
    ...     refuse_overwrite([], [Path("photos/out")], trees=[Path("photos")])
    ... except DataError as exc:
    ...     print(str(exc)[:46])
    output photos/out lies inside the input folder
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from imtrans.errors import DataError, ImtransError, RecipeError

__all__ = ["NAME_MAX", "check_run_name", "inside", "name_bytes", "real_path",
           "refuse_overwrite"]


#: Why an output inside an input tree is refused, unless the caller says better.
_READ_BACK = "which is read recursively: a later run would take the outputs for inputs"


def real_path(path: Path | str) -> Path:
    """``path`` made absolute with every symbolic link resolved (it need not exist)."""
    return Path(os.path.realpath(path))


def inside(path: Path | str, folder: Path | str) -> bool:
    """Whether ``path`` is ``folder`` or lies anywhere under it, links followed."""
    return real_path(path).is_relative_to(real_path(folder))


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None  # not there (yet): it cannot be an existing input by inode
    return status.st_dev, status.st_ino


def refuse_overwrite(inputs: Iterable[Path], outputs: Iterable[Path], *,
                     trees: Iterable[Path] = (), sources: Sequence[Path] | None = None,
                     tree_reason: str = _READ_BACK,
                     error: type[ImtransError] = DataError) -> None:
    """Raise unless every output is safe to write.

    Args:
        inputs: The files the command reads.
        outputs: The files (or output folders) it will write.
        trees: Folders it reads recursively: no output may be one or lie inside one, since a
            later run of the same command would read the outputs back as inputs.
        sources: When given, ``sources[i]`` is the input written to ``outputs[i]``; it names
            the two inputs of a collision in the message.
        tree_reason: Ends the message about an output inside a tree (after its name).
        error: The exception class to raise (the command's own kind of error).

    Raises:
        ImtransError: (``error``) an output is an input (the same file by any name), lies
            inside an input tree, or two outputs are the same file. The message names the
            paths and what to do.
    """
    inputs, outputs, trees = list(inputs), list(outputs), list(trees)
    by_real = {real_path(path): path for path in inputs}
    by_id = {file_id: path for path in inputs if (file_id := _file_id(path)) is not None}
    real_trees = [(real_path(tree), tree) for tree in trees]
    written: dict[Path, int] = {}
    for index, output in enumerate(outputs):
        real = real_path(output)
        source = by_real.get(real)
        if source is None:
            file_id = _file_id(output)
            source = by_id.get(file_id) if file_id is not None else None
        if source is not None:
            raise error(f"output {output} is the input {source}: writing it would destroy the "
                        "input; choose another output")
        for real_tree, tree in real_trees:
            if real.is_relative_to(real_tree):
                raise error(f"output {output} lies inside the input folder {tree}, "
                            f"{tree_reason}; choose an output outside it")
        first = written.setdefault(real, index)
        if first != index:
            named = (f"inputs {sources[first]} and {sources[index]} would both be written to"
                     if sources is not None else "two outputs are the same file,")
            raise error(f"{named} {output}, one replacing the other; rename one or write "
                        "them to separate folders")


def check_run_name(name: str) -> str:
    """``name`` if it names one folder inside ``run.output_dir``.

    Raises:
        RecipeError: a name with a path separator, ``.``, ``..``, a NUL, or empty: it would
            write outside ``run.output_dir`` (or nowhere).

    Example:
        >>> check_run_name("../../x")
        Traceback (most recent call last):
        ...
        imtrans.errors.RecipeError: run.name = '../../x' is not a folder name ...
    """
    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
           or Path(name).is_absolute())
    if bad:
        raise RecipeError(f"run.name = {name!r} is not a folder name (no '/', '\\', '.' or "
                          "'..'): runs are written inside run.output_dir, one folder each")
    if name_bytes(name) > NAME_MAX:  # a run made as NAME-2 needs room for the suffix too
        raise RecipeError(f"run.name = {name[:40]!r}... is {name_bytes(name)} bytes long: a "
                          f"folder name holds at most {NAME_MAX} (choose a shorter run.name)")
    return name


#: The longest file or folder name, in bytes, that common file systems take (ext4, XFS, APFS,
#: NTFS): a longer one fails only when the folder is made, after the checks said yes. Run
#: folder names keep 8 bytes free for the "-N" a taken name gets.
NAME_MAX = 255 - 8


def name_bytes(name: str) -> int:
    """The length of ``name`` in bytes, as the file system counts it."""
    return len(os.fsencode(name))
