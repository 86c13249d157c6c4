"""Display renderings of any image: 8-bit RGB previews for sample grids, HTML pages and reports.

Scientific images do not show as they are: a 16-bit CT slice uses a few hundred of 65,536
levels, a float image has no fixed range, a satellite image has 4 to 13 bands. A preview shows
one or three bands (:func:`display_rgb`'s ``bands``) through a window of values mapped to
0..255 (``window``):

- ``None`` (the default): ``uint8`` images as they are (the previews of 8-bit images do not
  change); other types through the percentile window.
- ``"percentile"``: the 1st to the 99th percentile of the shown bands of this image, one window
  for all of them so colours keep their balance. Where those are equal (a mostly constant
  image) the minimum to the maximum; a constant image shows mid gray.
- ``(low, high)``: a fixed window in the image's own units (``(-160, 240)`` for soft tissue in
  Hounsfield units).

Values outside the window are clipped to 0 or 255; NaN and infinities show as 0 and are left out
of the percentiles. Bands by default: one band (or two) shows band 0 in gray, three or more show
bands 0, 1 and 2 as red, green and blue (a 4th, alpha, is dropped). Satellite users name theirs:
``bands=[3, 2, 1]`` is Sentinel-2's true colour. The result is always ``H x W x 3`` ``uint8``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from imtrans.errors import InvalidArgumentError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["PERCENTILES", "Window", "display_rgb", "display_tensor"]

#: What a window may be: ``None``, ``"percentile"`` or ``(low, high)`` in the image's units.
Window = Sequence[float] | str | None

#: The percentiles of the automatic window (low, high).
PERCENTILES = (1.0, 99.0)

# The percentiles are estimated on at most about this many values (every k-th): a preview of
# a large image must not sort all of it.
_PERCENTILE_SAMPLES = 1 << 20
_MID_GRAY = 128


def display_rgb(array: NDArray[np.generic], *, bands: Sequence[int] | None = None,
                window: Window = None) -> NDArray[np.uint8]:
    """An ``H x W x 3`` ``uint8`` rendering of ``array`` (``H x W x C`` of any real type and
    band count, or ``H x W``) for a preview.

    ``bands`` names the 1 (gray) or 3 (red, green, blue) bands to show; ``window`` is ``None``,
    ``"percentile"`` or ``(low, high)`` (see the module's description). An 8-bit RGB or gray
    image with neither gives exactly its own pixels.

    Example:
        >>> ramp = np.arange(0, 4000, 10, dtype=np.uint16).reshape(20, 20, 1)
        >>> shown = display_rgb(ramp)
        >>> shown.shape, int(shown.min()), int(shown.max())
        ((20, 20, 3), 0, 255)
    """
    image = _as_hwc(np.asarray(array))
    shown = image[:, :, list(_shown_bands(image.shape[2], bands))]  # a copy: never the input
    if window is not None or shown.dtype != np.uint8:
        shown = _windowed(shown, _window_bounds(shown, window))
    if shown.shape[2] == 1:
        shown = np.repeat(shown, 3, axis=2)
    return np.ascontiguousarray(shown)


def display_tensor(image: Tensor, *, bands: Sequence[int] | None = None,
                   window: Window = None) -> NDArray[np.uint8]:
    """An ``H x W x 3`` ``uint8`` rendering of a ``C x H x W`` tensor in [-1, 1] (the range the
    networks work in), on any device.

    With ``window=None``, [-1, 1] maps to 0..255 exactly as
    :func:`imtrans.inference.translator.to_uint8` does (a 1- or 3-channel tensor gives the
    pixels of the sample grids and translated files); a ``window`` is in network units
    (``(-1, 1)``, or ``"percentile"``). ``bands`` chooses as in :func:`display_rgb`. NaN and
    infinities show as 0.
    """
    import torch  # here: importing this module must not wait for torch

    if image.ndim != 3:
        raise InvalidArgumentError(f"cannot show a tensor of shape {tuple(image.shape)}; "
                                   "expected C x H x W")
    selected = list(_shown_bands(image.shape[0], bands))
    values = image.detach()[selected].float()
    if window is None:
        finite = torch.nan_to_num(values, nan=-1.0, posinf=-1.0, neginf=-1.0)
        # The ops of to_uint8 (inference/translator.py, a floor above), so the pixels match.
        as_uint8 = finite.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
        return display_rgb(as_uint8.permute(1, 2, 0).cpu().numpy())
    return display_rgb(values.permute(1, 2, 0).cpu().numpy(), window=window)


def _as_hwc(array: NDArray[np.generic]) -> NDArray[np.generic]:
    if array.dtype.kind not in "iuf":
        raise InvalidArgumentError(f"cannot show an image of {array.dtype} values; expected "
                                   "integers or floats")
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3 or array.shape[2] < 1:
        raise InvalidArgumentError(f"cannot show an image of shape {tuple(array.shape)}; "
                                   "expected H x W or H x W x C with C >= 1")
    return array


def _shown_bands(count: int, bands: Sequence[int] | None) -> tuple[int, ...]:
    """The bands to show of an image of ``count`` bands: ``bands`` checked, or the default."""
    if bands is None:
        return (0,) if count < 3 else (0, 1, 2)
    chosen = tuple(bands) if isinstance(bands, Iterable) and not isinstance(bands, str) else ()
    if len(chosen) not in (1, 3):
        raise InvalidArgumentError(f"bands must name 1 band (gray) or 3 (red, green, blue); "
                                   f"got {bands!r}")
    for band in chosen:
        if isinstance(band, bool) or not isinstance(band, int | np.integer):
            raise InvalidArgumentError(f"bands are band numbers (0, 1, ...); got {band!r}")
        if not 0 <= band < count:
            raise InvalidArgumentError(f"band {band} does not exist: the image has {count} "
                                       f"band(s), numbered 0 to {count - 1}")
    return chosen


def _window_bounds(shown: NDArray[np.generic], window: Window) -> tuple[float, float]:
    """The ``(low, high)`` of ``window`` for the bands ``shown``; ``low == high`` only for an
    image without two different finite values."""
    if window is None or (isinstance(window, str) and window == "percentile"):
        return _percentile_window(shown)
    pair = tuple(window) if isinstance(window, Iterable) and not isinstance(window, str) else ()
    if len(pair) != 2 or not all(
            isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v) for v in pair):
        raise InvalidArgumentError(f"window must be 'percentile' or [low, high] (two finite "
                                   f"numbers); got {window!r}")
    low, high = float(pair[0]), float(pair[1])
    if not low < high:
        raise InvalidArgumentError(f"window [low, high] must have low < high; got {window!r}")
    return low, high


def _percentile_window(shown: NDArray[np.generic]) -> tuple[float, float]:
    flat: NDArray[Any] = shown.reshape(-1)
    step = -(-flat.size // _PERCENTILE_SAMPLES)
    sample = flat[::step]
    finite = _finite(shown)
    if finite is not None:
        sample = sample[finite.reshape(-1)[::step]]
        flat = flat[finite.reshape(-1)]
    if flat.size == 0:
        return 0.0, 0.0  # nothing finite: every pixel shows as 0 anyway
    if sample.size == 0:  # finite values only between the sampled ones
        sample = flat
    low, high = (float(v) for v in np.percentile(sample, PERCENTILES))
    if low < high:
        return low, high
    # Most of the image is one value (a mask, stars on black): show what differs from it.
    return float(flat.min()), float(flat.max())


def _windowed(shown: NDArray[np.generic], bounds: tuple[float, float]) -> NDArray[np.uint8]:
    """``shown`` with ``bounds`` mapped to 0..255 (clipped, rounded; non-finite values 0)."""
    low, high = bounds
    # float32 holds 8- and 16-bit levels exactly; wider types keep their precision.
    wide = shown.dtype.itemsize > (4 if shown.dtype.kind == "f" else 2)
    work = np.float64 if wide else np.float32
    values: NDArray[np.floating[Any]] = shown.astype(work)  # new: safe to edit in place
    finite = _finite(shown)
    if low < high:
        values -= low
        values *= 255.0 / (high - low)
        np.clip(values, 0.0, 255.0, out=values)
        np.rint(values, out=values)
    else:  # a constant image (or nothing finite): mid gray
        values[...] = _MID_GRAY
    if finite is not None:
        values[~finite] = 0
    return values.astype(np.uint8)


def _finite(shown: NDArray[np.generic]) -> NDArray[np.bool_] | None:
    """Where ``shown`` is finite, or ``None`` when all of it is (integer types)."""
    if shown.dtype.kind != "f":
        return None
    finite = np.isfinite(shown)
    return None if finite.all() else finite
