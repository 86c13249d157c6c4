"""Sample grids: one row per image, one labelled column per kind (``real A``, ``fake B``...).

A grid is a PNG and, beside it, its column labels as JSON (``step_N.png`` and ``step_N.json``
holding ``{"columns": ["real A", "fake B", ...]}``): the report shows the labels as a header row
in HTML, so they stay sharp and selectable instead of being burnt into the pixels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from imtrans.core.atomic import atomic_path, atomic_write

__all__ = ["DEFAULT_LABELS", "label_columns", "labels_path", "save_grid"]

#: Labels of the first columns of a trainer that returns a plain list; later ones are
#: ``column 3``, ``column 4``...
DEFAULT_LABELS = ("input", "output")


def label_columns(columns: Sequence[Tensor] | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``columns`` by label: a mapping as it is (in its order), a list with default labels.

    Trainers written before grids had labels return a list; they keep working and get
    ``input``, ``output``, ``column 3``...

    Example:
        >>> list(label_columns([torch.zeros(1), torch.zeros(1), torch.zeros(1)]))
        ['input', 'output', 'column 3']
    """
    if isinstance(columns, Mapping):
        return {str(label): images for label, images in columns.items()}
    return {(DEFAULT_LABELS[i] if i < len(DEFAULT_LABELS) else f"column {i + 1}"): images
            for i, images in enumerate(columns)}


def labels_path(grid: Path) -> Path:
    """Where the column labels of the grid ``grid`` (``step_N.png``) go: ``step_N.json``."""
    return grid.with_suffix(".json")


def save_grid(columns: Sequence[Tensor] | Mapping[str, Tensor], path: Path) -> None:
    """Write images in [-1, 1] as a PNG grid, each column one of ``columns`` (N x C x H x W),
    and the column labels beside it (:func:`labels_path`).

    ``columns`` is what :meth:`imtrans.trainers.Trainer.sample_images` returns: labels to
    images, or a plain list (labelled by :func:`label_columns`). Columns with 1 channel are
    shown grey, with more than 3 only their first 3 channels. Both files are written
    atomically (:mod:`imtrans.core.atomic`), the labels first, so a report that finds the PNG finds
    its labels too, and a viewer never sees half a file.
    """
    # Imported here: torchvision.utils brings in torchvision's models and torch._dynamo, two
    # seconds that every command starting up would otherwise wait for.
    from torchvision.utils import save_image

    labelled = label_columns(columns)
    shown = [_as_rgb(c.detach().float().cpu()) for c in labelled.values()]
    rows = torch.stack(shown, dim=1).flatten(0, 1)  # image 0's columns, then image 1's...
    atomic_write(labels_path(path), json.dumps({"columns": list(labelled)}) + "\n")
    with atomic_path(path) as temporary:
        save_image((rows + 1) / 2, temporary, nrow=len(shown), padding=2, format="png")


def _as_rgb(images: Tensor) -> Tensor:
    channels = images.shape[1]
    if channels == 1:
        return images.expand(-1, 3, -1, -1)
    if channels == 2:
        return torch.cat([images, images[:, :1]], 1)
    return images[:, :3]
