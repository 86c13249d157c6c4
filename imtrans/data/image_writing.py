"""Image arrays encoded as file bytes, in the array's own sample type and band count.

:func:`encode_image` turns an ``H x W x C`` array (a 2-D array is one channel) into the bytes
of an image file; which format is chosen by the suffix, and :func:`default_output_format` says
which suffix keeps a given type and band count. Who writes the bytes to a file (atomically,
next to what else) is the caller's business.

What each format holds:

- ``.png``: ``uint8`` with 1, 3 or 4 channels (through Pillow, byte for byte what imtrans
  always wrote) and ``uint16`` with 1, 3 or 4 channels (16-bit PNG, through OpenCV).
- ``.jpg``, ``.jpeg``, ``.bmp``, ``.webp``: ``uint8`` with 1, 3 or 4 channels, through Pillow
  as before. JPEG has no alpha: a 4th channel is dropped, as ``translate`` always did; BMP keeps
  no alpha either (Pillow's choice), and WebP stores one channel as RGB.
- ``.tif``, ``.tiff``: ``uint8``, ``uint16``, ``int16``, ``int32``, ``float32`` and ``float64``
  with 1 to 64 bands (through tifffile, zlib-compressed, samples interleaved).

Anything else is refused with :class:`~imtrans.errors.InvalidArgumentError`, naming the format
that can hold it.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import tifffile
from numpy.typing import DTypeLike, NDArray
from PIL import Image

from imtrans.errors import InvalidArgumentError

__all__ = [
    "IMAGE_OUTPUT_FORMATS", "MAX_TIFF_BANDS", "TIFF_DTYPES", "convert_dtype",
    "default_output_format", "encode_image",
]

#: File name suffixes :func:`encode_image` writes (compared in lower case).
IMAGE_OUTPUT_FORMATS: tuple[str, ...] = (
    ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp",
)

#: Sample types a TIFF is written in.
TIFF_DTYPES: frozenset[np.dtype[np.generic]] = frozenset(
    np.dtype(name) for name in ("uint8", "uint16", "int16", "int32", "float32", "float64")
)

#: The most bands a TIFF is written with (multispectral and small hyperspectral images).
MAX_TIFF_BANDS = 64

# Pillow's format name of each 8-bit suffix.
_PILLOW_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP",
                   ".webp": "WEBP"}
_TIFF_SUFFIXES = (".tif", ".tiff")
_IMAGE_CHANNELS = (1, 3, 4)  # gray, RGB, RGBA: what PNG, JPEG, BMP and WebP hold
_UINT8 = np.dtype(np.uint8)
_UINT16 = np.dtype(np.uint16)


def default_output_format(dtype: DTypeLike, channels: int) -> str:
    """The suffix that keeps images of ``dtype`` with ``channels`` channels as they are.

    ``uint8`` and ``uint16`` with 1, 3 or 4 channels give ``".png"`` (8- or 16-bit PNG);
    everything else (``int16``, ``float32``, 2 or more than 4 bands) gives ``".tif"``.

    Example:
        >>> default_output_format("uint16", 1), default_output_format("float32", 1)
        ('.png', '.tif')
    """
    if np.dtype(dtype) in (_UINT8, _UINT16) and channels in _IMAGE_CHANNELS:
        return ".png"
    return ".tif"


def encode_image(array: NDArray[np.generic], suffix: str) -> bytes:
    """The bytes of an image file of format ``suffix`` (``".png"``, ``".tif"``...) holding
    ``array``, an ``H x W x C`` array (``H x W``: one channel) in its own type.

    Raises :class:`~imtrans.errors.InvalidArgumentError` for an array that is not 2-D or 3-D,
    an unknown suffix, or a type or band count the format cannot hold (the message names the
    format that can).
    """
    image = _as_hwc(np.asarray(array))
    fmt = _normalised_suffix(suffix)
    if fmt in _TIFF_SUFFIXES:
        return _encode_tiff(image)
    _check_image_format(image, fmt)
    if image.dtype == _UINT16:
        return _encode_png16(image)
    return _encode_pillow(image, fmt)


def convert_dtype(array: NDArray[np.floating], dtype: DTypeLike) -> NDArray[np.generic]:
    """``array`` (float, in native units) as ``dtype``, used after mapping network outputs
    back to native units, before :func:`encode_image`.

    For an integer type the values are rounded (half to even) and clipped to the type's full
    range (``uint16``: 0..65535), and NaN becomes 0 (infinities clip to the ends); for a float
    type it is a plain cast.

    Example:
        >>> convert_dtype(np.array([-3.0, 1.5, 2.5, 70000.0, np.nan]), "uint16").tolist()
        [0, 2, 2, 65535, 0]
    """
    target = np.dtype(dtype)
    values = np.asarray(array)
    if np.issubdtype(target, np.floating):
        return values.astype(target)
    if not np.issubdtype(target, np.integer) or target.itemsize > 4:
        raise InvalidArgumentError(f"cannot convert images to {target}; expected an integer "
                                   "type of at most 32 bits (uint8, uint16, int16, int32) or a "
                                   "float type")
    # float32 holds every 8- and 16-bit level exactly; 32-bit ends need float64.
    work = np.float64 if target.itemsize > 2 or values.dtype == np.float64 else np.float32
    limits = np.iinfo(target)
    rounded = np.rint(values.astype(work, copy=False))  # a new array: safe to edit in place
    np.clip(rounded, limits.min, limits.max, out=rounded)
    rounded[np.isnan(rounded)] = 0
    return rounded.astype(target)


def _as_hwc(array: NDArray[np.generic]) -> NDArray[np.generic]:
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3 or array.shape[2] < 1:
        raise InvalidArgumentError(f"cannot write an image of shape {tuple(array.shape)}; "
                                   "expected H x W or H x W x C with C >= 1")
    return array


def _normalised_suffix(suffix: str) -> str:
    fmt = suffix.lower() if suffix.startswith(".") else f".{suffix.lower()}"
    if fmt not in IMAGE_OUTPUT_FORMATS:
        raise InvalidArgumentError(f"cannot write images as {suffix!r}; expected one of "
                                   f"{', '.join(IMAGE_OUTPUT_FORMATS)}")
    return fmt


def _check_image_format(image: NDArray[np.generic], fmt: str) -> None:
    """Refuse what PNG, JPEG, BMP or WebP cannot hold, pointing to the format that can."""
    channels, dtype = image.shape[2], image.dtype
    holds = "uint8 or uint16" if fmt == ".png" else "uint8"
    if dtype == _UINT8 or (fmt == ".png" and dtype == _UINT16):
        if channels in _IMAGE_CHANNELS:
            return
        what = f"{channels} channels"
    else:
        what = f"{dtype} images"
    suggested = default_output_format(dtype, channels)
    if suggested != ".tif":
        suggested += " or .tif"  # a TIFF holds every type and band count
    raise InvalidArgumentError(
        f"{fmt} cannot hold {what} ({fmt} holds {holds} with 1, 3 or 4 channels); write "
        f"{suggested} instead")


def _encode_pillow(image: NDArray[np.generic], fmt: str) -> bytes:
    channels = image.shape[2]
    if fmt in (".jpg", ".jpeg") and channels == 4:
        image = image[:, :, :3]  # JPEG has no alpha channel: dropped, as translate always did
    picture = Image.fromarray(np.ascontiguousarray(image[:, :, 0] if channels == 1 else image))
    buffer = io.BytesIO()
    picture.save(buffer, format=_PILLOW_FORMATS[fmt])
    return buffer.getvalue()


def _encode_png16(image: NDArray[np.generic]) -> bytes:
    channels = image.shape[2]
    # OpenCV writes its BGR(A) order as the file's RGB(A): swap so the file is RGB(A).
    ordered = image[:, :, 0] if channels == 1 else image[:, :, [2, 1, 0, 3][:channels]]
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(ordered))
    if not ok:  # OpenCV reports no reason; with a checked type and shape this does not happen
        raise InvalidArgumentError(f"cannot encode a {image.shape} uint16 image as PNG")
    return bytes(encoded.tobytes())


def _encode_tiff(image: NDArray[np.generic]) -> bytes:
    channels, dtype = image.shape[2], image.dtype
    if dtype not in TIFF_DTYPES:
        names = ", ".join(sorted(str(d) for d in TIFF_DTYPES))
        raise InvalidArgumentError(f".tif cannot hold {dtype} images; convert to one of "
                                   f"{names} first")
    if channels > MAX_TIFF_BANDS:
        raise InvalidArgumentError(f"cannot write {channels} bands; a .tif is written with at "
                                   f"most {MAX_TIFF_BANDS}")
    colour = dtype in (_UINT8, _UINT16) and channels in (3, 4)
    buffer = io.BytesIO()
    # zlib is in the standard library: tifffile needs no imagecodecs for it.
    tifffile.imwrite(
        buffer, np.ascontiguousarray(image[:, :, 0] if channels == 1 else image),
        photometric="rgb" if colour else "minisblack", planarconfig="contig",
        extrasamples=["unassalpha"] if colour and channels == 4 else None,
        compression="zlib", metadata=None)
    return buffer.getvalue()
