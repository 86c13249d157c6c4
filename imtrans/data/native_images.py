"""Decoding images in their own sample type: 16-bit, signed, float and multiband files.

:mod:`imtrans.data.images` decodes through Pillow into 8 bits, which is exact for the 8-bit
photos of the mission datasets but loses scientific images: Pillow keeps the high byte of
16-bit RGB PNGs, cannot open TIFFs of more than 4 bands, and the 8-bit reduction leaves 256 of
a CT's 4,096 levels. This module routes each file by its first bytes:

- **TIFF** (``II*``/``MM*``, also BigTIFF) through ``tifffile``: uint8, uint16, int16, int32,
  float32 and float64, any band count, interleaved or planar. A file that holds more than one
  image (pages of a stack, several series) is refused: imtrans reads one image per file.
  An 8-bit TIFF of 1, 3 or 4 bands still goes through Pillow, so its pixels are what they were.
- **16-bit PNG** (gray, gray + alpha, RGB, RGBA) through OpenCV, which keeps all 16 bits.
- **DICOM** (the ``DICM`` marker at byte 128, or a ``.dcm``/``.dicom`` name) through
  ``pydicom`` (the ``dicom`` extra), with the rescale slope and intercept applied, so CT values
  are Hounsfield units. One frame per file.
- Everything else through Pillow: 8-bit modes as before; Pillow's 16-bit and 32-bit modes
  (``I;16``, ``I``, ``F``) keep their values instead of being reduced.

:func:`decode_image` returns either the 8-bit Pillow image (the path of the 8-bit datasets,
unchanged) or an ``H x W x C`` numpy array in the file's type, in native units. Arrays keep
their type: ``uint8``, ``uint16``, ``int16`` or ``float32`` (``int32`` and ``float64`` become
``float32``, a DICOM with a non-identity rescale too). :func:`to_channels` then gives the channel
count a dataset asks for.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imtrans.data.images import _DECODE_ERRORS, _open_regular_file, _to_8bit, image_to_array
from imtrans.errors import DataError

__all__ = ["DICOM_EXTENSIONS", "NATIVE_DTYPES", "decode_image", "read_native", "to_channels"]

#: File name suffixes of DICOM files (compared in lower case); files without one are found by
#: their ``DICM`` marker when given by name.
DICOM_EXTENSIONS: frozenset[str] = frozenset({".dcm", ".dicom"})

#: The sample types arrays come back in.
NATIVE_DTYPES: tuple[str, ...] = ("uint8", "uint16", "int16", "float32")

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_GRAY_ALPHA = 4  # the IHDR colour type of gray + alpha
# ITU-R 601 luma, the weights of Pillow's "L" conversion (used for 8-bit images).
_LUMA = np.array([0.299, 0.587, 0.114])


def _pixel_limit() -> int:
    limit = Image.MAX_IMAGE_PIXELS
    return 2**62 if limit is None else 2 * int(limit)


def _check_pixels(height: int, width: int, path: Path | str) -> None:
    """Refuse a decompression bomb from its header, as Pillow does (above twice its limit)."""
    if height * width > _pixel_limit():
        raise DataError(f"cannot read image {path}: {width}x{height} pixels is more than the "
                        f"{_pixel_limit():,} accepted (a decompression bomb?)")


def _native_type(array: np.ndarray) -> np.ndarray:
    """``array`` in one of :data:`NATIVE_DTYPES` (other types converted without loss where
    float32 can hold them)."""
    if array.dtype.name in NATIVE_DTYPES:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if array.dtype.kind in "iuf":
        return array.astype(np.float32)
    raise DataError(f"images of sample type {array.dtype} (e.g. complex) are not supported")


def _with_channel_axis(array: np.ndarray) -> np.ndarray:
    return array[:, :, None] if array.ndim == 2 else array


def _read_tiff(data: bytes, path: Path | str) -> np.ndarray | None:
    """A TIFF's one image as ``H x W x C``; None when it is plain 8-bit (left to Pillow)."""
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        series = tiff.series
        if not series:
            raise DataError(f"cannot read image {path}: the TIFF holds no image")
        first = series[0]
        shape, axes = tuple(first.shape), first.axes
        extra = [(axis, size) for axis, size in zip(axes, shape, strict=True)
                 if axis not in "YXSC" and size > 1]
        if len(series) > 1 or (len(tiff.pages) > 1 and extra):
            pages = max(len(tiff.pages), len(series))
            raise DataError(f"cannot read image {path}: it is a multi-page TIFF ({pages} "
                            "images); imtrans reads one image per file: save each page as "
                            "a file of its own, or, when the pages are the bands of one "
                            "image, write them as one page of bands (tifffile.imwrite(path, "
                            "bands_first, planarconfig='separate'))")
        if extra:
            raise DataError(f"cannot read image {path}: the TIFF holds a {axes} stack of shape "
                            f"{shape}; imtrans reads one 2-D image (Y, X, and bands) per file")
        page = tiff.pages[0]
        height, width = shape[axes.index("Y")], shape[axes.index("X")]
        _check_pixels(height, width, path)
        bands = int(np.prod([s for a, s in zip(axes, shape, strict=True) if a in "SC"]))
        photometric = getattr(page, "photometric", None)
        # Pillow reads 8-bit gray, palette, RGB(A), YCbCr and CMYK files as it always did
        # (orientation included), but not 3 or 4 bands stored as MINISBLACK (what tifffile
        # and GDAL write for band stacks): tifffile reads those.
        band_stack = bands > 1 and photometric == tifffile.PHOTOMETRIC.MINISBLACK
        if first.dtype == np.uint8 and bands in (1, 3, 4) and not band_stack:
            return None
        array = first.asarray()
    kept = [axis for axis in axes if axis in "YXSC"]
    array = array.reshape([s for a, s in zip(axes, shape, strict=True) if a in "YXSC"])
    order = [kept.index("Y"), kept.index("X")] + [i for i, a in enumerate(kept) if a in "SC"]
    array = np.transpose(array, order).reshape(height, width, -1)
    return np.ascontiguousarray(_native_type(array))


def _read_png16(data: bytes, path: Path | str) -> np.ndarray:
    """A 16-bit PNG through OpenCV (Pillow would keep only the high byte of 16-bit RGB)."""
    import cv2

    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    _check_pixels(height, width, path)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DataError(f"cannot read image {path}: the 16-bit PNG cannot be decoded "
                        "(truncated or damaged?)")
    array = _with_channel_axis(array)
    if data[25] == _PNG_GRAY_ALPHA:  # OpenCV gives gray + alpha as gray, gray, gray, alpha
        return np.ascontiguousarray(array[:, :, [0, 3]])
    if array.shape[2] in (3, 4):  # OpenCV's order is BGR(A)
        array = array[:, :, [2, 1, 0, 3][: array.shape[2]]]
    return np.ascontiguousarray(array)


def _read_dicom(data: bytes, path: Path | str) -> np.ndarray:
    """One DICOM frame in its modality's units (rescale slope and intercept applied)."""
    try:
        import pydicom
    except ImportError:
        raise DataError(f"cannot read image {path}: reading DICOM needs pydicom: "
                        "pip install 'imtrans[dicom]'") from None
    from pydicom.pixels import apply_rescale  # type: ignore[attr-defined]

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        _check_pixels(rows, columns, path)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise DataError(f"cannot read image {path}: the DICOM holds {frames} frames; "
                            "imtrans reads one image per file: save each frame as a file")
        array = dataset.pixel_array
        slope = float(dataset.get("RescaleSlope", 1) or 1)
        intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    except DataError:
        raise
    except Exception as exc:  # pydicom raises many types for damaged files
        raise DataError(f"cannot read image {path}: {str(exc) or type(exc).__name__}") from exc
    if (slope, intercept) != (1.0, 0.0):
        rescaled = apply_rescale(array, dataset)
        # CT and most modalities: integer values in int16 after rescale keep their type.
        if (slope == 1.0 and intercept.is_integer() and rescaled.size
                and rescaled.min() >= -32768 and rescaled.max() <= 32767):
            array = rescaled.astype(np.int16)
        else:
            array = rescaled.astype(np.float32)
    return np.ascontiguousarray(_native_type(_with_channel_axis(array)))


def _read_pillow(data: bytes, path: Path | str) -> Image.Image | np.ndarray:
    """Pillow's decoding: 8-bit modes as an image, 16/32-bit modes as a native array."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            opened = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            # Pillow's own message names the in-memory buffer, an address that says nothing.
            raise DataError(f"cannot read image {path}: cannot identify image file (not an "
                            "image, or a format imtrans does not read)") from None
        with opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            image.load()
    if image.mode.startswith("I;16"):
        return _with_channel_axis(np.asarray(image).astype(np.uint16))
    if image.mode in ("I", "F"):
        return _with_channel_axis(np.asarray(image).astype(np.float32))
    return _to_8bit(image)


def decode_image(path: Path | str) -> Image.Image | np.ndarray:
    """Decode an image file: an 8-bit Pillow image, or an ``H x W x C`` array in native type.

    See the module docstring for which files take which path. Only regular files are opened
    (a FIFO would block).

    Args:
        path: The image file.

    Returns:
        A loaded 8-bit Pillow image (EXIF orientation applied) for files that are 8-bit, or a
        C-contiguous ``H x W x C`` array of ``uint8``, ``uint16``, ``int16`` or ``float32``.

    Raises:
        DataError: the file is missing, unreadable, not a regular file, truncated, too large,
            multi-page, or DICOM without pydicom; the message names the path and the cause.

    Example:
        >>> decode_image("ct/slice_001.tif").dtype  # doctest: +SKIP
        dtype('int16')
    """
    try:
        with _open_regular_file(path) as handle:
            data = handle.read()
        # DICOM first: its 128-byte preamble may itself hold a TIFF header (dual files).
        if data[128:132] == b"DICM" or Path(path).suffix.lower() in DICOM_EXTENSIONS:
            return _read_dicom(data, path)
        if data[:4] in _TIFF_MAGICS:
            array = _read_tiff(data, path)
            if array is not None:
                return array
        elif data[:8] == _PNG_MAGIC and len(data) > 24 and data[24] == 16:
            return _read_png16(data, path)
        return _read_pillow(data, path)
    except DataError:
        raise
    except (*_DECODE_ERRORS, MemoryError, RuntimeError) as exc:  # type: ignore[misc]
        cause = str(exc) or type(exc).__name__
        raise DataError(f"cannot read image {path}: {cause}") from exc


def _luma(array: np.ndarray) -> np.ndarray:
    gray = array[:, :, :3].astype(np.float64) @ _LUMA
    return _cast_like(gray, array.dtype)[:, :, None]


def _cast_like(values: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _opaque(array: np.ndarray) -> np.ndarray:
    """An alpha band of full opacity for ``array``'s type (the type's maximum, 1.0 for float)."""
    value = np.iinfo(array.dtype).max if np.issubdtype(array.dtype, np.integer) else 1.0
    return np.full((*array.shape[:2], 1), value, array.dtype)


def to_channels(decoded: Image.Image | np.ndarray, channels: int,
                path: Path | str = "") -> np.ndarray:
    """The ``H x W x channels`` array of a decoded image.

    8-bit Pillow images follow :func:`~imtrans.data.images.image_to_array` (unchanged). Native
    arrays keep their bands when the count matches; otherwise gray becomes RGB by repetition,
    RGB(A) becomes gray by ITU-R 601 luma, RGBA loses its alpha, RGB gets an opaque alpha.
    Any other mismatch (a 6-band file read as 3 channels) is an error: bands are never invented
    or dropped silently.

    Raises:
        DataError: the band count cannot become ``channels``; the message names both.
    """
    if isinstance(decoded, Image.Image):
        return image_to_array(decoded, channels)
    have = decoded.shape[2]
    if have == channels:
        return decoded
    if have in (1, 2) and channels == 3:  # gray (and alpha, dropped) repeated
        return np.ascontiguousarray(np.repeat(decoded[:, :, :1], 3, axis=2))
    if have in (3, 4) and channels == 1:
        return _luma(decoded)
    if have == 4 and channels == 3:
        return np.ascontiguousarray(decoded[:, :, :3])
    if have == 3 and channels == 4:
        return np.concatenate([decoded, _opaque(decoded)], axis=2)
    if have == 2 and channels == 1:
        return np.ascontiguousarray(decoded[:, :, :1])
    where = f"{path}: " if path else ""
    raise DataError(f"cannot use image {where}it has {have} bands ({decoded.dtype}) but "
                    f"{channels} channels are read; set data.in_channels / data.out_channels "
                    f"to the files' band count ({have})")


def read_native(path: Path | str, channels: int) -> np.ndarray:
    """Read an image file as an ``H x W x channels`` array, keeping its sample type.

    8-bit files give exactly :func:`~imtrans.data.images.read_image`'s ``uint8`` array; others
    give ``uint16``, ``int16`` or ``float32`` in native units (see :func:`decode_image` and
    :func:`to_channels`).

    Raises:
        DataError: the file cannot be read or its bands cannot become ``channels``.

    Example:
        >>> read_native("mri/t1_042.png", channels=1).dtype  # a 16-bit PNG  # doctest: +SKIP
        dtype('uint16')
    """
    return to_channels(decode_image(path), channels, path)
