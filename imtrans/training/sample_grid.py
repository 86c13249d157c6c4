"""Sample grids: one row per image, one labelled column per kind (``real A``, ``fake B``...).

A grid is a PNG and, beside it, its column labels as JSON (``step_N.png`` and ``step_N.json``
holding ``{"columns": ["real A", "fake B", ...]}``): the report shows the labels as a header row
in HTML, so they stay sharp and selectable instead of being burnt into the pixels.

Every image of a grid is a preview (:class:`GridPreview`, from the recipe's ``[log]
preview_bands`` and ``preview_window``): one band in gray or three as red, green and blue, of
any band count, through a window of values. 8-bit data with the defaults shows as grids always
did, pixel for pixel; 16-bit, float and multiband data show with contrast and never fail on
their band count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from imtrans.core.atomic import atomic_write
from imtrans.data.display import Window, display_rgb, display_tensor
from imtrans.data.image_writing import encode_image
from imtrans.data.value_range import DomainValues, ValueRange

__all__ = ["DEFAULT_LABELS", "GridPreview", "label_columns", "labels_path", "save_grid"]

#: Labels of the first columns of a trainer that returns a plain list; later ones are
#: ``column 3``, ``column 4``...
DEFAULT_LABELS = ("input", "output")

_PADDING = 2  # black pixels around every image of a grid (as torchvision's make_grid)
_EIGHT_BIT = ValueRange(0.0, 255.0)  # what a run without value ranges trained on


@dataclass(frozen=True)
class GridPreview:
    """How a grid shows its images: the bands and the window of values (``[log]``).

    Attributes:
        bands: The 1 (gray) or 3 (red, green, blue) bands to show, or None for the default of
            :func:`imtrans.data.display.display_rgb` (band 0 in gray for 1 or 2 bands, bands
            0, 1, 2 for more). A column that lacks one of them (a 1-band output beside a
            6-band input) shows its default bands instead: a grid never fails on bands.
        window: ``"auto"`` (the percentile window for the columns of a domain whose files
            are not 8-bit, the whole value range for 8-bit ones), ``"percentile"`` (the 1st
            to 99th percentile of each image), ``"range"`` (the domain's whole value range,
            [-1, 1] of the network, onto 0..255) or ``(low, high)`` in the data's native
            units (``(-160, 240)`` HU for soft tissue in CT).
        values: The run's value ranges and file types per domain (``"A"``, ``"B"``, as the
            dataset's ``values``), or None for data without them (8-bit, 0..255).
    """

    bands: tuple[int, ...] | None = None
    window: str | tuple[float, float] = "auto"
    values: Mapping[str, DomainValues] | None = None

    def render(self, label: str, image: Tensor) -> NDArray[np.uint8]:
        """The ``H x W x 3`` ``uint8`` preview of ``image`` (``C x H x W`` in [-1, 1]) of the
        column ``label`` (its last word, ``A`` or ``B``, names its domain)."""
        bands = self.bands if self.bands and max(self.bands) < image.shape[0] else None
        window = self._network_window(_domain_of(label, self.values))
        if window is None:
            return display_rgb(_whole_range_uint8(image), bands=bands)
        return display_tensor(image, bands=bands, window=window)

    def _network_window(self, domain: DomainValues | None) -> Window:
        """The window in network units for a column of ``domain`` (None: unknown), or None
        for the whole range [-1, 1]."""
        known = list((self.values or {}).values())
        if self.window == "range":
            return None
        if self.window == "auto":
            shown = [domain] if domain is not None else known
            return "percentile" if any(d.dtype != "uint8" for d in shown) else None
        if isinstance(self.window, str):
            return self.window  # "percentile"
        ranges = {domain.range} if domain is not None else {d.range for d in known}
        if len(ranges) > 1:  # a column of an unknown domain, and the domains differ
            return "percentile"
        value_range = ranges.pop() if ranges else _EIGHT_BIT
        low, high = (2 * (v - value_range.low) / value_range.span - 1 for v in self.window)
        return (low, high) if low < high else "percentile"  # a window below float precision


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


def save_grid(columns: Sequence[Tensor] | Mapping[str, Tensor], path: Path,
              preview: GridPreview | None = None) -> None:
    """Write images in [-1, 1] as a PNG grid, each column one of ``columns`` (N x C x H x W),
    and the column labels beside it (:func:`labels_path`).

    ``columns`` is what :meth:`imtrans.trainers.Trainer.sample_images` returns: labels to
    images, or a plain list (labelled by :func:`label_columns`). Each image shows as
    ``preview`` says (default: :class:`GridPreview`'s defaults, for 8-bit data the pixels
    grids always had). Both files are written atomically (:mod:`imtrans.core.atomic`), the
    labels first, so a report that finds the PNG finds its labels too, and a viewer never sees
    half a file.
    """
    preview = preview if preview is not None else GridPreview()
    labelled = label_columns(columns)
    shown = {label: images.detach() for label, images in labelled.items()}
    rows = max(len(images) for images in shown.values())
    tiles = [preview.render(label, images[row]) if row < len(images) else None
             for row in range(rows) for label, images in shown.items()]
    atomic_write(labels_path(path), json.dumps({"columns": list(labelled)}) + "\n")
    atomic_write(path, encode_image(_tiled(tiles, len(shown)), ".png"))


def _domain_of(label: str, values: Mapping[str, DomainValues] | None) -> DomainValues | None:
    """The domain of the column ``label`` (``real A``, ``fake B``...), None where its last
    word names none of ``values``."""
    words = label.split()
    return (values or {}).get(words[-1]) if words else None


def _whole_range_uint8(image: Tensor) -> NDArray[np.uint8]:
    """``image`` (C x H x W in [-1, 1]) as ``H x W x C`` ``uint8``, [-1, 1] onto 0..255 by
    the arithmetic of torchvision's ``save_image``, which wrote the grids before previews:
    grids of 8-bit runs keep their exact bytes. NaN shows as 0."""
    values = torch.nan_to_num(image.float(), nan=-1.0)
    as_uint8 = ((values + 1) / 2).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return as_uint8.permute(1, 2, 0).cpu().numpy()


def _tiled(tiles: list[NDArray[np.uint8] | None], per_row: int) -> NDArray[np.uint8]:
    """``tiles`` (H x W x 3, row by row; None: a black place, in a column shorter than the
    others) laid out ``per_row`` to a row with :data:`_PADDING` black pixels around each, as
    torchvision's ``make_grid`` lays them out (a single tile alone, unpadded)."""
    present = [tile for tile in tiles if tile is not None]
    if len(tiles) == 1 and present:
        return present[0]
    height, width = (max(t.shape[i] for t in present) + _PADDING for i in (0, 1))
    across = min(per_row, len(tiles))
    down = math.ceil(len(tiles) / across)
    grid = np.zeros((down * height + _PADDING, across * width + _PADDING, 3), np.uint8)
    for index, tile in enumerate(tiles):
        if tile is None:
            continue
        top, left = (index // across) * height + _PADDING, (index % across) * width + _PADDING
        grid[top:top + tile.shape[0], left:left + tile.shape[1]] = tile
    return grid
