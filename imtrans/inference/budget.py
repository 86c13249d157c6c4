"""Memory budgets for work whose size a file or a flag sets: an image's pixels, a check size.

A 171 KB PNG can declare 9400 x 9400 16-bit pixels, and ``export --check-size 100000`` asks
for a 120 GB input: sizes like these are estimated before anything of that size is allocated,
and refused with one line when the estimate is above the budget. The budget is
``--max-memory`` (``max_memory=`` in Python); by default three quarters of the memory
available now (``MemAvailable``, or the machine's memory where that cannot be read, and
never more than a container's limit). The estimates are lower bounds, so nothing that fits
is refused.

Example:
    >>> parse_size("1.5G"), parse_size("512M"), parse_size("4096")
    (1610612736, 536870912, 4096)
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torch import nn

from imtrans.core.device import _cgroup_limit, device_memory, meminfo_bytes
from imtrans.core.regular_files import open_regular_file, size_text
from imtrans.errors import ImtransError, InvalidArgumentError
from imtrans.inference.activation_peak import (
    cached_peak_activation_values,
    peak_activation_values,  # still this module's API: it lived here before it moved
)
from imtrans.inference.tiling import padded_size

if TYPE_CHECKING:
    from imtrans.inference.translator import Translator

__all__ = ["ImageBudget", "available_memory", "default_budget", "image_header", "parse_size",
           "peak_activation_values"]

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``4096``, ``512M``, ``1.5G``, ``2GiB`` or ``2GB`` (powers of 1024).

    Raises:
        InvalidArgumentError: not a size, or not above 0.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidArgumentError(f"{text!r} is not a size; give bytes or a number with K, "
                                   "M, G or T (e.g. 8G)")
    value = float(match[1]) * _UNITS[match[2].upper()]
    if not math.isfinite(value) or value < 1:
        raise InvalidArgumentError(f"{text!r} is not a size above 0 bytes")
    return int(value)


def available_memory() -> int | None:
    """Bytes of memory available to this process now, when they can be read."""
    sizes = [size for size in (_meminfo_available(), _cgroup_limit()) if size is not None]
    if not sizes:
        total = device_memory(torch.device("cpu"))
        return total
    return min(sizes)


def default_budget() -> int:
    """The default memory budget: three quarters of :func:`available_memory` (4 GiB when it
    cannot be read)."""
    available = available_memory()
    return 3 * available // 4 if available else 4 * 2**30


def _meminfo_available() -> int | None:
    return meminfo_bytes("MemAvailable")


def image_header(path: Path | str) -> tuple[int, int, str] | None:
    """Width, height and mode of an image file, from its header alone (no pixel is decoded);
    ``None`` when the file cannot be opened as an image (reading it says why).

    The mode is Pillow's (``RGB``, ``I;16``...), except for TIFFs that are read in their own
    type (16-bit, signed, float, any band count), whose mode says their bands and sample type:
    ``6 x uint16``."""
    native = _tiff_header(path)
    if native is not None:
        return native
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a bomb warning: reading the pixels refuses it
            with open_regular_file(path, what="image") as handle, Image.open(handle) as image:
                return image.width, image.height, image.mode
    except (ImtransError, OSError, ValueError, SyntaxError, EOFError, TypeError,
            Image.DecompressionBombError):
        return None


_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# The mode image_header gives a TIFF read in its own type: "<bands> x <sample type>".
_NATIVE_MODE = re.compile(r"(\d+) x (\w+)")


def _tiff_header(path: Path | str) -> tuple[int, int, str] | None:
    """Width, height and ``"<bands> x <type>"`` of a TIFF that is not plain 8-bit (those go
    through Pillow, as before), from its tags; ``None`` for other files and damaged TIFFs."""
    import numpy as np
    import tifffile

    try:
        with open_regular_file(path, what="image") as handle:
            if handle.read(4) not in _TIFF_MAGICS:
                return None
            handle.seek(0)
            with tifffile.TiffFile(handle, name=Path(path).name) as tiff:
                series = tiff.series[0]
                axes, shape, dtype = series.axes, tuple(series.shape), np.dtype(series.dtype)
    except Exception:  # tifffile raises many types for damaged files; reading says why
        return None
    if "Y" not in axes or "X" not in axes:
        return None
    bands = math.prod(size for axis, size in zip(axes, shape, strict=True) if axis in "SC")
    if dtype == np.uint8 and bands in (1, 3, 4):
        return None  # Pillow's 8-bit path
    return shape[axes.index("X")], shape[axes.index("Y")], f"{bands} x {dtype.name}"


#: Bytes per pixel of Pillow's decoded image, by mode (Pillow keeps 3- and 4-band images,
#: and 2-band ones, in 4 bytes a pixel).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


@dataclass(frozen=True)
class ImageBudget:
    """What translating an image file costs in memory, checked from its header.

    An estimate of the peak, per pixel: decoding (Pillow's image, its upright copy, the
    8-bit conversion and the ``uint8`` array), the ``float32`` input tensor and its padded
    copy, the output and its blending weights (tiles), and the generator's largest layer on
    one tile (or the whole image when it is not tiled). Images are counted one at a time:
    an image large enough to be tiled is translated alone, never batched with others.

    Attributes:
        limit: The budget in bytes.
        in_channels: Channels the generator takes.
        out_channels: Channels it returns.
        multiple: The generator's ``size_multiple``.
        tile_size: Largest side translated in one piece.
        activation_bytes: The largest layer's input and output at ``tile_size`` (bytes).
    """

    limit: int
    in_channels: int
    out_channels: int
    multiple: int
    tile_size: int
    activation_bytes: int

    @classmethod
    def for_generator(cls, generator: nn.Module, in_channels: int, out_channels: int,
                      multiple: int, tile_size: int, limit: int | None) -> ImageBudget:
        """The budget of a translator's generator (``limit`` ``None``: the default)."""
        values = cached_peak_activation_values(generator, in_channels, tile_size, tile_size)
        return cls(limit=default_budget() if limit is None else limit,
                   in_channels=in_channels, out_channels=out_channels, multiple=multiple,
                   tile_size=tile_size, activation_bytes=4 * values)

    @classmethod
    def for_translator(cls, translator: Translator, limit: int | None) -> ImageBudget:
        """The budget of a translator's generator, in whatever number type it runs: a 16-bit
        one is counted as a float32 copy on the meta device (no memory; a float32 example
        would not run through 16-bit weights, and the count would be lost)."""
        generator = translator.generator
        if translator.precision != torch.float32:
            generator = copy.deepcopy(generator).to_empty(device="meta").float()
        return cls.for_generator(generator, translator.in_channels, translator.out_channels,
                                 translator.size_multiple, translator.tile_size, limit)

    def estimate(self, width: int, height: int, mode: str) -> int:
        """Bytes translating a ``width x height`` image of ``mode`` (Pillow's, or
        :func:`image_header`'s ``"<bands> x <type>"``) takes at least."""
        pixels = width * height
        native = _NATIVE_MODE.fullmatch(mode)
        if native is not None:
            # The decoded array and its channels-first copy, and the float32 normalised one.
            import numpy as np

            sample = int(native[1]) * np.dtype(native[2]).itemsize
            return pixels * (2 * sample + 4 * self.in_channels) + self.translating(width,
                                                                                   height)
        decoded = _MODE_BYTES.get(mode, 4)
        high_depth = mode.startswith("I") or mode == "F"
        # Pillow's image and its upright copy; the 8-bit image (high bit depths go through
        # a 4-byte integer array), the converted image and its uint8 array.
        decode = pixels * (2 * decoded + (4 if high_depth else 0) + 4 + self.in_channels)
        return decode + self.translating(width, height)

    def translating(self, width: int, height: int) -> int:
        """Bytes the translation of one decoded ``width x height`` image takes at least."""
        pixels = width * height
        padded = padded_size(width, self.multiple) * padded_size(height, self.multiple)
        # float32: the input and its padded copy, the output and the tiles' blending weights.
        tensors = 4 * (pixels * self.in_channels + padded * (self.in_channels +
                                                              self.out_channels + 1))
        # The generator's layers run on one tile at a time, or on the whole (smaller) image.
        tile = self.tile_size**2
        layers = self.activation_bytes * min(padded, tile) // tile
        return tensors + layers

    def batch_capacity(self, width: int, height: int) -> int:
        """How many decoded ``width x height`` images fit in the budget in one batch (at
        least one: an image the budget refuses is never decoded)."""
        return max(1, self.limit // max(1, self.translating(width, height)))

    def refusal(self, path: Path | str) -> str | None:
        """Why the image file at ``path`` is refused (without its name), or ``None`` when it
        fits (or its header cannot be read: decoding it reports that)."""
        header = image_header(path)
        if header is None:
            return None
        width, height, mode = header
        needed = self.estimate(width, height, mode)
        if needed <= self.limit:
            return None
        return (f"{width}x{height} pixels ({mode}) would take about "
                f"{size_text(needed)} to translate, above the memory budget of "
                f"{size_text(self.limit)}; raise it with --max-memory (e.g. --max-memory "
                f"{math.ceil(needed / 2**30)}G) or shrink the image")
