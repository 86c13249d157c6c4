"""Choosing the dataset folder to train on: the one given, or else the bundled sample.

A first run with a recipe that names ``datasets/monet2photo`` should teach, not fail: when the
folder is missing and imtrans bundles a sample of that dataset, training goes on with the
sample and one message says so and how to get the full set. With no sample, the error says
how to get the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imtrans.core.regular_files import why_not_folder
from imtrans.data.catalog import catalog_names, get_entry
from imtrans.data.images import find_images
from imtrans.errors import DataError
from imtrans.samples import sample_root

__all__ = ["DEFAULT_DATASETS_DIR", "ResolvedRoot", "resolve_root"]

#: The folder ``imtrans data download`` writes to when given no ``--dir``.
DEFAULT_DATASETS_DIR = "datasets"


@dataclass(frozen=True)
class ResolvedRoot:
    """The dataset folder to use, and why.

    Attributes:
        path: The folder.
        source: ``given`` (the folder asked for exists) or ``sample`` (the bundled sample).
        message: For ``sample``, one line for the user saying so and how to get the full set.
    """

    path: Path
    source: Literal["given", "sample"]
    message: str | None


def _count(folder: Path) -> int:
    try:
        return len(find_images(folder))
    except DataError:
        return 0


def _download_hint(name: str, root: Path) -> str:
    """The command that puts ``name`` at ``root`` (when root is ``<dir>/<name>``)."""
    parent = root.parent
    option = "" if parent == Path(DEFAULT_DATASETS_DIR) else f" --dir {parent}"
    return f"`imtrans data download {name}{option}`"


def resolve_root(root: str | Path, catalog_name: str | None) -> ResolvedRoot:
    """Pick the dataset folder: ``root`` when it exists, else the bundled sample of the dataset.

    Args:
        root: The folder the recipe names, e.g. ``datasets/monet2photo``.
        catalog_name: The catalog name of the dataset it should hold (``monet2photo``), or
            ``None`` when it is not a catalog dataset (then there is no fallback).

    Returns:
        The folder, where it came from, and for a sample the message to show once.

    Raises:
        DataError: ``root`` is a file, or it is missing and there is no sample; the message
            names the path and how to get the data.

    Example:
        >>> resolved = resolve_root("datasets/monet2photo", "monet2photo")  # doctest: +SKIP
        >>> resolved.source  # doctest: +SKIP
        'sample'
    """
    root = Path(root)
    if os.path.lexists(root):  # a link loop or a link to nothing is said, not taken for absent
        reason = why_not_folder(root)
        if reason is not None:
            raise DataError(f"dataset folder {root} {reason}")
        return ResolvedRoot(root, "given", None)
    sample = sample_root(catalog_name) if catalog_name else None
    known = catalog_name in catalog_names()
    if sample is not None and catalog_name is not None:
        if (sample / "trainA").is_dir():
            counts = f"{_count(sample / 'trainA')} + {_count(sample / 'trainB')} images"
            if sorted(p.stem for p in (sample / "trainA").iterdir()) == sorted(
                    p.stem for p in (sample / "trainB").iterdir()):  # the paired layout
                counts = f"{_count(sample / 'trainA')} pairs in two folders"
        else:
            counts = f"{_count(sample / 'train')} pairs"
        full = ""
        if known:
            entry = get_entry(catalog_name)
            size = f" ({entry.size_text})" if entry.size_text != "?" else ""
            fetch = _download_hint(entry.name, root)
            full = f"; {fetch} fetches the full set{size} into {root.parent / entry.name}"
        message = (f"{root} not found: training on the bundled sample of {catalog_name} "
                   f"({counts}){full}")
        return ResolvedRoot(sample, "sample", message)
    if known and catalog_name is not None:
        hint = f"{_download_hint(catalog_name, root)} fetches it into {root.parent / catalog_name}"
        if root.name != catalog_name:
            hint += "; then point the recipe at that folder"
        raise DataError(f"dataset folder {root} does not exist; {hint}")
    raise DataError(f"dataset folder {root} does not exist; put the images there, or see "
                    "`imtrans data list` for the datasets imtrans can download")
