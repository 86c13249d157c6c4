"""The folder datasets of pix2pix and CycleGAN: aligned pairs, unaligned domains, single images.

Folders are listed at construction (recursively, see :func:`~imtrans.data.images.find_images`);
images are decoded only when an item is requested. An image that cannot be decoded or used is
skipped with a :class:`SkippedImageWarning` naming it, and the next file in order is used
instead, so that one bad file never kills a DataLoader worker. With ``strict=True`` it raises
:class:`~imtrans.errors.DataError` instead. The ``skipped`` attribute counts the files skipped
so far by this process (each DataLoader worker holds its own copy of the dataset).

The datasets also offer the view :class:`~imtrans.data.device_cache.DeviceImageCache` needs to
hold their images on the training device: :meth:`cache_tables` (the tables of images an item is
drawn from), :meth:`load_resized` (one table entry, decoded and resized, not yet cropped) and
:meth:`item_positions` (which entry of each table item ``i`` uses).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from imtrans.core.printable import printable_path
from imtrans.data.domain_values import Domain, DomainSet, resolve_domains
from imtrans.data.images import find_images
from imtrans.data.native_images import decode_image, read_native, to_channels
from imtrans.data.transforms import (
    DEFAULT_RESIZE_FILTER,
    ImageTransform,
    Preprocess,
    ResizeFilter,
    build_transform,
)
from imtrans.data.value_range import ValueRangeSpec, to_network_tensor
from imtrans.errors import DataError, InvalidArgumentError

__all__ = ["AlignedDataset", "SingleDataset", "SkippedImageWarning", "UnalignedDataset"]

Direction = Literal["AtoB", "BtoA"]
T = TypeVar("T")


class SkippedImageWarning(UserWarning):
    """An image file could not be used and was skipped (``strict=False``)."""


def _check_options(direction: str, max_items: int | None, **channels: int) -> None:
    if direction not in ("AtoB", "BtoA"):
        raise InvalidArgumentError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
    counts = {**channels, **({} if max_items is None else {"max_items": max_items})}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")


def _scan(folder: Path, expected: str, max_items: int | None) -> list[Path]:
    """List a dataset folder, turning a missing or empty one into an error naming the layout."""
    try:
        paths = find_images(folder)
    except DataError as exc:
        raise DataError(f"{exc}; expected {expected}") from None
    return paths if max_items is None else paths[:max_items]


class _Files:
    """The image files of one folder, with the bookkeeping of the ones found unusable."""

    def __init__(self, folder: Path, paths: list[Path], strict: bool) -> None:
        self.folder = folder
        self.paths = paths
        self.strict = strict
        self.bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int, use: Callable[[Path], T]) -> tuple[T, Path]:
        """``use`` the file at ``index``, or the first usable one after it (wrapping around)."""
        count = len(self.paths)
        last = ""
        for step in range(count):
            position = (index + step) % count
            if position in self.bad:
                continue
            path = self.paths[position]
            try:
                return use(path), path
            except DataError as exc:
                # Decoding errors name the file already; transform errors do not know it.
                reason = str(exc) if str(path) in str(exc) else f"cannot use image {path}: {exc}"
                # A name that is not UTF-8 must not make the warning itself fail to print.
                reason = printable_path(reason)
                if self.strict:
                    raise DataError(reason) from exc
                self.bad.add(position)
                last = f" (the last: {reason})"
                warnings.warn(f"skipping {printable_path(path)}: {reason}", SkippedImageWarning,
                              stacklevel=2)
        # The warnings may have gone to a worker's stderr: the error says why, by one example.
        raise DataError(f"none of the {count} image files under {printable_path(self.folder)} "
                        f"could be used{last}")


class _FolderDataset(Dataset[dict[str, Tensor | str]]):
    """What the folder datasets share: index checks, the skip count, the domains' values."""

    _files: tuple[_Files, ...]
    domains: DomainSet
    transform: ImageTransform

    @property
    def values(self) -> dict[str, Any]:
        """Per domain key, its value range, sample type and bands
        (:class:`~imtrans.data.value_range.DomainValues`), as the checkpoints record them."""
        return dict(self.domains.values)

    @property
    def cache_element_bytes(self) -> int:
        """Bytes per cached value: 1 for 8-bit data in 0..255 (kept as ``uint8``; the range
        ``"dtype"`` or ``[0, 255]``), else 4 (kept as ``float32`` already in [-1, 1])."""
        native = all(v.dtype == "uint8" and (r is None or r.is_8bit) for v, r in
                     zip(self.domains.values.values(), self.domains.ranges.values(), strict=True))
        return 1 if native else 4

    def _cacheable(self, key: str, image: np.ndarray) -> np.ndarray:
        """``image`` resized for the device cache: the ``uint8`` array itself for 8-bit data in
        0..255 (the cache maps it as the transforms do), else ``float32`` in [-1, 1].

        Raises:
            DataError: a file of another type in a domain cached as 8-bit.
        """
        value_range = self.domains.range_of(key, image.dtype)
        resized = self.transform.resize(image)
        if self.cache_element_bytes == 1:
            if image.dtype != np.uint8:  # a uint8 table would wrap its [-1, 1] floats
                raise DataError(f"it is {image.dtype} while the domain's other files are 8-bit, "
                                "and the device cache holds one type per domain: convert the "
                                'files to one type, or set data.cache = "off"')
            return resized
        # The transforms' own arithmetic: bit for bit the floats of the streaming path.
        return to_network_tensor(resized, value_range).numpy().transpose(1, 2, 0)

    def __len__(self) -> int:
        return max(len(files) for files in self._files)

    @property
    def skipped(self) -> int:
        """How many files this process has skipped as unusable so far."""
        return sum(len(files.bad) for files in self._files)

    @property
    def skipped_paths(self) -> list[Path]:
        """The files this process has skipped as unusable so far, sorted."""
        return sorted(f.paths[i] for f in self._files for i in f.bad)

    def cache_tables(self) -> list[dict[str, int]]:
        """The tables an item's images come from: for each, its image keys and their channels.

        Aligned data has one table whose entries hold A and B together; unaligned data one
        table per domain.
        """
        raise NotImplementedError

    def table_length(self, table: int) -> int:
        """How many entries (files) ``table`` has."""
        return len(self._files[table])

    def entry_path(self, table: int, position: int) -> Path:
        """The file behind entry ``position`` of ``table``."""
        return self._files[table].paths[position]

    def load_resized(self, table: int, position: int) -> tuple[dict[str, np.ndarray], Path]:
        """Entry ``position`` of ``table`` decoded and resized (``H x W x C`` ``uint8``), with
        the file it came from: the next usable one when that file is not (as items skip)."""
        raise NotImplementedError

    def item_positions(self, index: int, generator: torch.Generator | None = None) -> list[int]:
        """The entry of each table that item ``index`` uses (random draws from ``generator``)."""
        return [self._index(index)]

    def _index(self, index: int) -> int:
        length = len(self)
        if index < 0:
            index += length
        if not 0 <= index < length:
            raise IndexError(f"index {index} is out of range for a dataset of {length} items")
        return index


class _PairsDataset(_FolderDataset):
    """What the paired datasets share: one table of pairs, whose two sides get one random
    crop and flip. Subclasses say how a pair's arrays are read (:meth:`_sides`) and which
    file holds its target (:meth:`_target_path`)."""

    #: A and B of an item belong together: random transforms must treat them alike.
    paired = True
    in_channels: int
    out_channels: int

    def _set_options(self, direction: str, in_channels: int, out_channels: int,
                     max_items: int | None, transform: ImageTransform) -> None:
        """Check and keep the options every paired dataset has (the subclasses' signatures
        stay explicit: the registry and the recipe checks read them)."""
        _check_options(direction, max_items, in_channels=in_channels, out_channels=out_channels)
        self.direction = direction
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.transform = transform

    def _sides(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """The input and target arrays of the pair listed as ``path``."""
        raise NotImplementedError

    def _target_path(self, path: Path) -> Path:
        """The file holding the target of the pair listed as ``path``."""
        return path

    def _pair(self, path: Path) -> tuple[Tensor, Tensor]:
        try:
            a, b = self.transform(*self._sides(path), ranges=(self.domains.ranges["A"],
                                                             self.domains.ranges["B"]))
        except InvalidArgumentError as exc:  # sides of different sizes: this pair is unusable
            raise DataError(str(exc)) from exc
        assert b is not None  # a paired call always returns both
        return a, b

    def _resized_pair(self, path: Path) -> dict[str, np.ndarray]:
        source, target = self._sides(path)
        return {"A": self._cacheable("A", source), "B": self._cacheable("B", target)}

    def cache_tables(self) -> list[dict[str, int]]:
        return [{"A": self.in_channels, "B": self.out_channels}]

    def load_resized(self, table: int, position: int) -> tuple[dict[str, np.ndarray], Path]:
        return self._files[table].load(position, self._resized_pair)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        (a, b), path = self._files[0].load(self._index(index), self._pair)
        return {"A": a, "B": b, "A_path": str(path), "B_path": str(self._target_path(path))}


class AlignedDataset(_PairsDataset):
    """Paired images, A and B side by side in one file (pix2pix layout: root/<split>/*.jpg).

    ``A`` is always the input domain: with ``direction="BtoA"`` it is the right half. With an
    odd width ``w`` both halves are ``w // 2`` wide and the last column is dropped.

    Args:
        root: The dataset folder, holding ``<split>/``.
        split: The sub-folder to read (``train``, ``val``, ``test``).
        direction: ``AtoB`` translates the left half into the right half; ``BtoA`` the reverse.
        in_channels: Channels of the input domain (after ``direction`` is applied).
        out_channels: Channels of the output domain.
        preprocess: See :func:`~imtrans.data.transforms.build_transform`.
        load_size: Resize target.
        crop_size: Random crop size.
        flip: Random horizontal flip, the same for A and B.
        max_items: Use only the first ``max_items`` files (sorted).
        strict: Raise on an unusable image instead of skipping it.
        resize_filter: ``pil_bicubic`` (the official code's pixels) or ``opencv_cubic`` (the
            previous filter); see :func:`~imtrans.data.transforms.build_transform`. It also
            makes the images :meth:`load_resized` gives the device cache.
        value_range: How native values map onto [-1, 1]: ``"dtype"``, ``"auto"``,
            ``[low, high]``, or a table of those for ``A`` and ``B``; see
            :mod:`imtrans.data.value_range`.

    Raises:
        DataError: the split folder is missing or holds no images.
        InvalidArgumentError: an invalid option.

    Example:
        >>> data = AlignedDataset(root="datasets/facades", direction="BtoA")  # doctest: +SKIP
        >>> data[0]["A"].shape  # doctest: +SKIP
        torch.Size([3, 256, 256])
    """

    def __init__(
        self,
        *,
        root: str | Path,
        split: str = "train",
        direction: Direction = "AtoB",
        in_channels: int = 3,
        out_channels: int = 3,
        preprocess: Preprocess = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        max_items: int | None = None,
        strict: bool = False,
        resize_filter: ResizeFilter = DEFAULT_RESIZE_FILTER,
        value_range: ValueRangeSpec = "dtype",
    ) -> None:
        self._set_options(direction, in_channels, out_channels, max_items,
                          build_transform(preprocess, load_size, crop_size, flip, paired=True,
                                          resize_filter=resize_filter))
        folder = Path(root) / split
        expected = f"{folder}/ holding images with A and B side by side (left half A)"
        self._files = (_Files(folder, _scan(folder, expected, max_items), strict),)
        paths = self._files[0].paths
        self.domains = resolve_domains(value_range, {
            "A": Domain(paths, in_channels, lambda path: self._sides(path)[0],
                        "left half" if direction == "AtoB" else "right half"),
            "B": Domain(paths, out_channels, lambda path: self._sides(path)[1],
                        "right half" if direction == "AtoB" else "left half")})

    def _sides(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """The input and target halves of the file at ``path``, as arrays (``uint8`` for
        8-bit files, native types otherwise)."""
        image = decode_image(path)
        if isinstance(image, np.ndarray):
            height, width = image.shape[:2]
        else:
            width, height = image.size
        half = width // 2
        if half < 1:
            raise DataError(f"{width}x{height} is too narrow to hold A and B side by side")
        left: Image.Image | np.ndarray
        right: Image.Image | np.ndarray
        if isinstance(image, np.ndarray):
            left, right = image[:, :half], image[:, half:2 * half]
        else:
            left = image.crop((0, 0, half, height))
            right = image.crop((half, 0, 2 * half, height))
        source, target = (left, right) if self.direction == "AtoB" else (right, left)
        return (to_channels(source, self.in_channels, path),
                to_channels(target, self.out_channels, path))


class UnalignedDataset(_FolderDataset):
    """Unpaired images of two domains (CycleGAN layout: root/<split>A/ and root/<split>B/).

    The length is the larger folder's. Item ``i`` takes ``A[i % len(A)]`` and ``B[i % len(B)]``
    when ``serial``, otherwise a B drawn uniformly from torch's global generator (so
    ``torch.manual_seed`` reproduces it). A and B get independent random transforms. Here A
    is the input domain: with ``BtoA``, the images of ``<split>B/`` are taken in order and
    those of ``<split>A/`` drawn, unless ``official_order``.

    Args:
        root: The dataset folder, holding ``<split>A/`` and ``<split>B/``.
        split: The prefix of the two folders (``train``, ``test``).
        direction: ``BtoA`` reads A from ``<split>B/`` and B from ``<split>A/``.
        serial: Pair ``A[i]`` with ``B[i % len(B)]`` instead of a random B.
        official_order: With ``BtoA``, take the images of ``<split>A/`` (the target domain)
            in order and draw those of ``<split>B/`` (the input), as the official
            ``unaligned_dataset`` does; no effect with ``AtoB``. The same number of draws
            from the same generator: only which folder they index changes.
        in_channels, out_channels, preprocess, load_size, crop_size, flip, max_items, strict:
            As for :class:`AlignedDataset`; the flip is drawn separately for A and B, and
            ``max_items`` limits each folder.
        resize_filter, value_range: As for :class:`AlignedDataset`.

    Raises:
        DataError: a domain folder is missing or holds no images.
        InvalidArgumentError: an invalid option.

    Example:
        >>> data = UnalignedDataset(root="datasets/monet2photo")  # doctest: +SKIP
        >>> sorted(data[0])  # doctest: +SKIP
        ['A', 'A_path', 'B', 'B_path']
    """

    #: A and B are unrelated images: each gets its own random transform.
    paired = False

    def __init__(
        self,
        *,
        root: str | Path,
        split: str = "train",
        direction: Direction = "AtoB",
        in_channels: int = 3,
        out_channels: int = 3,
        preprocess: Preprocess = "resize_and_crop",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        max_items: int | None = None,
        strict: bool = False,
        serial: bool = False,
        resize_filter: ResizeFilter = DEFAULT_RESIZE_FILTER,
        official_order: bool = False,
        value_range: ValueRangeSpec = "dtype",
    ) -> None:
        _check_options(direction, max_items, in_channels=in_channels, out_channels=out_channels)
        self.direction = direction
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.serial = serial
        # Which of the two folders (input 0, target 1) is drawn at random; the other is
        # taken in order. The official code draws from <split>B/ whatever the direction.
        self._drawn = 0 if official_order and direction == "BtoA" else 1
        self.transform = build_transform(preprocess, load_size, crop_size, flip, paired=False,
                                         resize_filter=resize_filter)
        root = Path(root)
        expected = f"{split}A/ and {split}B/ under {root}"
        folders = [root / f"{split}A", root / f"{split}B"]
        if direction == "BtoA":
            folders.reverse()
        self._files = tuple(
            _Files(folder, _scan(folder, expected, max_items), strict) for folder in folders
        )
        self.domains = resolve_domains(value_range, {
            "A": Domain(self._files[0].paths, in_channels),
            "B": Domain(self._files[1].paths, out_channels)})

    def _image_a(self, path: Path) -> Tensor:
        image = read_native(path, self.in_channels)
        return self.transform(image, ranges=(self.domains.ranges["A"], None))[0]

    def _image_b(self, path: Path) -> Tensor:
        image = read_native(path, self.out_channels)
        return self.transform(image, ranges=(self.domains.ranges["B"], None))[0]

    def _position(self, table: int, index: int, generator: torch.Generator | None) -> int:
        """Item ``index``'s file position in the input's (0) or the target's (1) folder: one
        folder is taken in order, the other drawn."""
        count = len(self._files[table])
        if self.serial or table != self._drawn:
            return index % count
        return int(torch.randint(count, (), generator=generator))

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        index = self._index(index)
        files_a, files_b = self._files
        # The input is read (and its random transform drawn) before the target's position,
        # as it always was: the random streams, and so the runs, stay as they were.
        # torch's global generator: seeded by torch.manual_seed, and per DataLoader worker.
        a, path_a = files_a.load(self._position(0, index, None), self._image_a)
        b, path_b = files_b.load(self._position(1, index, None), self._image_b)
        return {"A": a, "B": b, "A_path": str(path_a), "B_path": str(path_b)}

    def cache_tables(self) -> list[dict[str, int]]:
        return [{"A": self.in_channels}, {"B": self.out_channels}]

    def load_resized(self, table: int, position: int) -> tuple[dict[str, np.ndarray], Path]:
        key, channels = ("A", self.in_channels) if table == 0 else ("B", self.out_channels)
        return self._files[table].load(
            position, lambda path: {key: self._cacheable(key, read_native(path, channels))})

    def item_positions(self, index: int, generator: torch.Generator | None = None) -> list[int]:
        index = self._index(index)
        return [self._position(0, index, generator), self._position(1, index, generator)]


class SingleDataset(_FolderDataset):
    """Images of one folder, for translating them (root/ holding images, searched recursively).

    The defaults keep each image's size, rounded to a multiple of 4, and do not flip.

    Args:
        root: The folder of images.
        in_channels: Channels to read the images with.
        preprocess, load_size, crop_size, flip, max_items, strict: As for
            :class:`AlignedDataset`.
        resize_filter: As for :class:`AlignedDataset`.
        value_range: As for :class:`AlignedDataset` (only ``A`` applies).

    Raises:
        DataError: the folder is missing or holds no images.
        InvalidArgumentError: an invalid option.

    Example:
        >>> data = SingleDataset(root="photos")  # doctest: +SKIP
        >>> sorted(data[0])  # doctest: +SKIP
        ['A', 'A_path']
    """

    paired = False  # images of one domain: no ground truth

    def __init__(
        self,
        *,
        root: str | Path,
        in_channels: int = 3,
        preprocess: Preprocess = "none",
        load_size: int = 256,
        crop_size: int = 256,
        flip: bool = False,
        max_items: int | None = None,
        strict: bool = False,
        resize_filter: ResizeFilter = DEFAULT_RESIZE_FILTER,
        value_range: ValueRangeSpec = "dtype",
    ) -> None:
        _check_options("AtoB", max_items, in_channels=in_channels)
        self.in_channels = in_channels
        self.transform = build_transform(preprocess, load_size, crop_size, flip, paired=False,
                                         resize_filter=resize_filter)
        folder = Path(root)
        expected = f"image files in {folder}/ (searched recursively)"
        self._files = (_Files(folder, _scan(folder, expected, max_items), strict),)
        self.domains = resolve_domains(value_range, {"A": Domain(self._files[0].paths,
                                                                 in_channels)})

    def _image(self, path: Path) -> Tensor:
        image = read_native(path, self.in_channels)
        return self.transform(image, ranges=(self.domains.ranges["A"], None))[0]

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        a, path = self._files[0].load(self._index(index), self._image)
        return {"A": a, "A_path": str(path)}

    def cache_tables(self) -> list[dict[str, int]]:
        return [{"A": self.in_channels}]

    def load_resized(self, table: int, position: int) -> tuple[dict[str, np.ndarray], Path]:
        return self._files[table].load(
            position, lambda path: {"A": self._cacheable("A", read_native(path,
                                                                          self.in_channels))})
