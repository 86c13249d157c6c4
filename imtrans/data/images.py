"""Image file discovery and decoding.

Every image enters imtrans through :func:`read_image` (or :func:`load_image` followed by
:func:`image_to_array` when one file holds two images, as in the pix2pix layout). Decoding is
done by Pillow, which reads JPEG, PNG, TIFF, BMP and WebP in 8 or 16 bits, grayscale, RGB,
RGBA, palette and CMYK. Whatever the file holds, the result is an ``H x W x C`` ``uint8`` array
with the channel count the caller asked for, which is what albumentations expects.

Channel rules (:func:`image_to_array`):

- 1 channel: luma (Pillow's ``L``: ITU-R 601, ``0.299 R + 0.587 G + 0.114 B``); alpha dropped.
- 3 channels: RGB; alpha is dropped, not composited; grayscale is repeated three times.
- 4 channels: RGBA; images without alpha get an opaque alpha of 255.
- any other count ``n``: the RGB channels repeated cyclically (``n=2`` gives R, G; ``n=6``
  gives R, G, B, R, G, B).

16-bit images (modes ``I;16*`` and ``I``) are scaled to 8 bits by dividing by 257, so 65535
becomes 255 and nothing is clipped. 32-bit float images (mode ``F``) are taken to lie in
[0, 1]. Pillow itself reduces 16-bit RGB files to 8 bits by keeping the high byte.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from imtrans.core.printable import printable_path
from imtrans.errors import DataError, InvalidArgumentError

__all__ = [
    "IMAGE_EXTENSIONS", "MAX_FOLDER_DEPTH", "SkippedFolderWarning", "find_images", "image_to_array",
    "load_image", "read_image",
]

#: File name suffixes treated as images (compared in lower case).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom"}
)

# Everything Pillow raises for a file it cannot decode; UnidentifiedImageError is an OSError.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    TypeError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


#: How many levels of folders below a data folder are searched for images.
MAX_FOLDER_DEPTH = 64


class SkippedFolderWarning(UserWarning):
    """Folders under a data folder were not searched (nested too deep, or unreadable)."""


def _accepted() -> str:
    return ", ".join(sorted(IMAGE_EXTENSIONS))


def find_images(folder: Path | str) -> list[Path]:
    """List the image files under ``folder``, recursively and sorted.

    Symbolic links to directories are not followed (so a link loop cannot hang the scan);
    links to files are listed. Hidden files and directories (names starting with ``.``, such
    as ``.ipynb_checkpoints`` or macOS ``._`` resource files) are ignored. The scan is a loop,
    not recursion, and stops :data:`MAX_FOLDER_DEPTH` levels below ``folder``: deeper folders
    (1400 nested ``a/a/a/...`` once overflowed Python's recursion) and folders that cannot be
    listed (no permission, a path longer than the system allows) are left out, with one
    :class:`SkippedFolderWarning` naming the first.

    Args:
        folder: The directory to scan.

    Returns:
        The image paths, sorted.

    Raises:
        DataError: ``folder`` does not exist, is not a directory or holds no image files.

    Example:
        >>> find_images(Path("datasets/facades/train"))[:1]  # doctest: +SKIP
        [PosixPath('datasets/facades/train/1.jpg')]
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise DataError(f"image folder {folder} is not a directory")
    found: list[Path] = []
    too_deep: list[str] = []
    unreadable: list[str] = []
    pending: list[tuple[str, int]] = [(str(folder), 0)]
    while pending:
        directory, depth = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if _is_folder_link(entry):
                        continue  # not followed: a link loop would never end
                    if entry.is_dir(follow_symlinks=False):
                        if depth + 1 > MAX_FOLDER_DEPTH:
                            too_deep.append(entry.path)
                        else:
                            pending.append((entry.path, depth + 1))
                    elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                        found.append(Path(entry.path))
        except OSError as exc:
            if depth == 0:
                raise DataError(f"cannot list image folder {folder}: "
                                f"{exc.strerror or exc}") from None
            unreadable.append(f"{directory} ({exc.strerror or exc})")
    _warn_left_out(folder, too_deep, unreadable)
    if not found:
        raise DataError(
            f"image folder {folder} holds no images; accepted extensions: {_accepted()}"
        )
    return sorted(found)


def _is_folder_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink() and entry.is_dir()
    except OSError:  # a link loop or a dangling link: listed, then skipped as unreadable
        return False


def _warn_left_out(folder: Path, too_deep: list[str], unreadable: list[str]) -> None:
    """One warning for the folders :func:`find_images` did not search."""
    parts = []
    if too_deep:
        parts.append(f"{len(too_deep)} folder(s) nested more than {MAX_FOLDER_DEPTH} levels "
                     f"deep (the first: {printable_path(min(too_deep))[:300]})")
    if unreadable:
        parts.append(f"{len(unreadable)} folder(s) that cannot be listed (the first: "
                     f"{printable_path(min(unreadable))[:300]})")
    if parts:
        warnings.warn(f"image folder {printable_path(folder)}: not searched: "
                      + "; ".join(parts), SkippedFolderWarning, stacklevel=3)


def _to_8bit(image: Image.Image) -> Image.Image:
    """Bring high bit-depth grayscale modes to ``L`` by scaling, never by clipping."""
    if image.mode.startswith("I;16") or image.mode == "I":
        # 257 = 65535 / 255 maps the full 16-bit range onto the full 8-bit range. In integers,
        # round(v / 257) = (2v + 257) // 514 (v / 257 is never a tie, 257 being odd): one
        # 4-byte array per pixel, where float64 took three 8-byte ones (a 9400 x 9400 PNG
        # of 171 KB needed 2 GB here).
        values = np.clip(np.asarray(image), 0, 65535).astype(np.int32)
        values *= 2
        values += 257
        values //= 514
        return Image.fromarray(values.astype(np.uint8), mode="L")
    if image.mode == "F":
        values = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0.0, 1.0)
        return Image.fromarray(np.rint(values * 255.0).astype(np.uint8), mode="L")
    return image


def _special_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` is when it is not a regular file, else None."""
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device", stat.S_ISDIR: "a directory"}
    return next((kind for test, kind in kinds.items() if test(mode)), "not a file")


def _open_regular_file(path: Path | str) -> BinaryIO:
    """Open ``path`` for reading when it is a regular file (links followed).

    Opening a FIFO blocks until something writes to it, and opening a device can act on it
    (a watchdog arms, a tape rewinds): anything else than a regular file is refused from its
    ``stat`` before it is opened. The open itself does not block (``O_NONBLOCK``), and the
    opened file is checked again, in case the name was replaced by a FIFO in between.

    Raises:
        OSError: the file cannot be opened.
        DataError: it is not a regular file.
    """
    kind = _special_kind(os.stat(path).st_mode)
    if kind is None:
        nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX only; Windows has no FIFOs here
        handle = open(path, "rb", opener=lambda name, flags: os.open(name, flags | nonblocking))  # noqa: SIM115
        kind = _special_kind(os.fstat(handle.fileno()).st_mode)
        if kind is None:
            return handle
        handle.close()
    raise DataError(f"cannot read image {path}: {kind}, not a regular file")


def load_image(path: Path | str) -> Image.Image:
    """Decode an image file into an 8-bit Pillow image, upright as its EXIF data says.

    The pixels are decoded now (not lazily), so a truncated file fails here. Images larger
    than ``PIL.Image.MAX_IMAGE_PIXELS`` are refused as decompression bombs. Only regular files
    are opened: a FIFO, socket or device is refused without being opened (a FIFO would block).

    Args:
        path: The image file.

    Returns:
        A loaded image in an 8-bit mode (``L``, ``LA``, ``P``, ``RGB``, ``RGBA``, ``CMYK``...).

    Raises:
        DataError: the file is missing, unreadable, not a regular file, truncated or too
            large; the message names the path and the cause.

    Example:
        >>> load_image("photo.jpg").mode  # doctest: +SKIP
        'RGB'
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x the pixel limit; both are bombs to us.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open_regular_file(path) as handle, Image.open(handle) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
                image.load()
                return _to_8bit(image)
    except _DECODE_ERRORS as exc:
        cause = str(exc) or type(exc).__name__
        raise DataError(f"cannot read image {path}: {cause}") from exc


def _check_channels(channels: int) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise InvalidArgumentError(f"channels must be an integer >= 1, got {channels!r}")


def image_to_array(image: Image.Image, channels: int) -> np.ndarray:
    """Convert a Pillow image to an ``H x W x channels`` ``uint8`` array.

    See the module docstring for the conversion rules.

    Args:
        image: An image, typically from :func:`load_image`.
        channels: The number of channels wanted (>= 1).

    Returns:
        A C-contiguous ``uint8`` array of shape ``(H, W, channels)``.

    Raises:
        InvalidArgumentError: ``channels`` is not an integer >= 1.
        DataError: Pillow cannot convert the image's mode (e.g. ``LAB``).

    Example:
        >>> image_to_array(Image.new("L", (4, 2), 7), 3).shape
        (2, 4, 3)
    """
    _check_channels(channels)
    image = _to_8bit(image)
    if image.mode in ("P", "PA"):
        # Going through RGBA keeps a palette's transparency instead of warning about it.
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    target = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels, "RGB")
    try:
        converted = image.convert(target)
    except ValueError as exc:
        raise DataError(f"cannot convert an image of mode {image.mode} to {target}: {exc}") from exc
    array = np.asarray(converted, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] != channels:
        array = array[:, :, [i % 3 for i in range(channels)]]
    return np.ascontiguousarray(array)


def read_image(path: Path | str, channels: int) -> np.ndarray:
    """Read an image file as an ``H x W x channels`` ``uint8`` array.

    Args:
        path: The image file.
        channels: The number of channels wanted: 1 (gray), 3 (RGB), 4 (RGBA) or any other
            count (RGB repeated cyclically).

    Returns:
        A C-contiguous ``uint8`` array of shape ``(H, W, channels)``, EXIF orientation applied.

    Raises:
        InvalidArgumentError: ``channels`` is not an integer >= 1.
        DataError: the file is missing, unreadable, truncated, too large or of a mode that
            cannot be converted; the message names the path.

    Example:
        >>> read_image("edges/1.png", channels=1).shape  # doctest: +SKIP
        (256, 256, 1)
    """
    _check_channels(channels)
    image = load_image(path)
    try:
        return image_to_array(image, channels)
    except DataError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
