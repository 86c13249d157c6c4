"""Paired images in two folders, matched by name: the layout of medical and remote-sensing data.

``root/<split>A/`` and ``root/<split>B/`` hold the two sides of each pair under the same
relative name; the extension may differ (``ct/0001.dcm`` with ``mr/0001.tif``). Each side has
its own channel count, sample type and value range. pix2pixHD and img2img-turbo use this layout
too; the ``aligned`` dataset's side-by-side files are the other paired layout.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from imtrans.core.printable import printable_path
from imtrans.data.domain_values import Domain, resolve_domains
from imtrans.data.folders import (
    Direction,
    SkippedImageWarning,
    _Files,
    _PairsDataset,
    _scan,
)
from imtrans.data.native_images import read_native
from imtrans.data.transforms import DEFAULT_RESIZE_FILTER, Preprocess, ResizeFilter, build_transform
from imtrans.data.value_range import ValueRangeSpec
from imtrans.errors import DataError

__all__ = ["PairedDataset", "match_pairs"]

#: How many unmatched names an error lists before "and N more".
_LISTED = 10


def _stem(path: Path, folder: Path) -> str:
    """A file's name inside ``folder`` without its extension: what pairs are matched by."""
    return path.relative_to(folder).with_suffix("").as_posix()


def _by_stem(paths: list[Path], folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in paths:
        stem = _stem(path, folder)
        if stem in found:
            raise DataError(f"{printable_path(folder)} holds two files named {stem!r} "
                            f"({found[stem].name} and {path.name}): pairs are matched by "
                            "name without the extension, so each name must be unique")
        found[stem] = path
    return found


def _listed(names: list[str]) -> str:
    shown = ", ".join(printable_path(n) for n in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def match_pairs(folder_a: Path, paths_a: list[Path], folder_b: Path, paths_b: list[Path], *,
                strict: bool) -> tuple[list[tuple[Path, Path]], int]:
    """Pair the files of two folders by relative name without extension.

    Returns:
        The pairs, sorted by name, and how many files had no partner (left out; 0 when
        ``strict``).

    Raises:
        DataError: with ``strict``, files without a partner, all listed in one message; a
            name twice in one folder (``a.png`` and ``a.tif``); no pair at all.

    Warns:
        SkippedImageWarning: without ``strict``, the files left out (listed).

    Example:
        >>> match_pairs(Path("A"), [Path("A/1.tif")], Path("B"), [Path("B/1.png")],
        ...             strict=True)
        ([(PosixPath('A/1.tif'), PosixPath('B/1.png'))], 0)
    """
    stems_a, stems_b = _by_stem(paths_a, folder_a), _by_stem(paths_b, folder_b)
    only_a = sorted(stems_a.keys() - stems_b.keys())
    only_b = sorted(stems_b.keys() - stems_a.keys())
    if strict and (only_a or only_b):
        parts = [f"{len(names)} file(s) in {printable_path(folder)} have no partner in "
                 f"{printable_path(other)}: {_listed(names)}"
                 for names, folder, other in ((only_a, folder_a, folder_b),
                                              (only_b, folder_b, folder_a)) if names]
        raise DataError("; ".join(parts) + " (pairs are matched by name without the "
                        "extension; strict = false leaves them out)")
    pairs = [(stems_a[stem], stems_b[stem]) for stem in sorted(stems_a.keys() & stems_b.keys())]
    if not pairs:
        raise DataError(f"no file of {printable_path(folder_a)} has a partner of the same name "
                        f"in {printable_path(folder_b)}")
    left_out = ([f"{folder_a.name}/{n}" for n in only_a]
                + [f"{folder_b.name}/{n}" for n in only_b])
    if left_out:  # said once, so that a typo in the names does not go unseen
        warnings.warn(f"left out {len(left_out)} file(s) without a partner of the same name "
                      f"(strict = false): {_listed(left_out)}", SkippedImageWarning,
                      stacklevel=2)
    return pairs, len(only_a) + len(only_b)


class PairedDataset(_PairsDataset):
    """Paired images in two folders matched by name (root/<split>A/, root/<split>B/).

    ``A`` is the input domain: with ``direction="BtoA"`` it is read from ``<split>B/``. Both
    sides of a pair must have the same size; they get one random crop and flip together.

    Args:
        root: The dataset folder, holding ``<split>A/`` and ``<split>B/``.
        split: The prefix of the two folders (``train``, ``test``).
        direction: ``BtoA`` reads the input from ``<split>B/``.
        in_channels: Bands of the input side (after ``direction``).
        out_channels: Bands of the target side.
        preprocess, load_size, crop_size, flip, max_items, resize_filter, value_range: As for
            :class:`~imtrans.data.folders.AlignedDataset` (``max_items`` counts pairs).
        strict: Files without a partner are an error listing them, and an unusable file
            raises; ``False`` leaves unmatched files out (counted in :attr:`unmatched`, listed
            in one warning) and skips unusable pairs with a warning.

    Raises:
        DataError: a folder is missing or empty, names do not match (with ``strict``), or a
            name appears twice in one folder.
        InvalidArgumentError: an invalid option.

    Example:
        >>> data = PairedDataset(root="datasets/ct", in_channels=1, out_channels=1,
        ...                      value_range=[-1024, 3071])  # doctest: +SKIP
        >>> data[0]["A"].shape  # doctest: +SKIP
        torch.Size([1, 256, 256])
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
        strict: bool = True,
        resize_filter: ResizeFilter = DEFAULT_RESIZE_FILTER,
        value_range: ValueRangeSpec = "dtype",
    ) -> None:
        self._set_options(direction, in_channels, out_channels, max_items,
                          build_transform(preprocess, load_size, crop_size, flip, paired=True,
                                          resize_filter=resize_filter))
        root = Path(root)
        folders = [root / f"{split}A", root / f"{split}B"]
        if direction == "BtoA":
            folders.reverse()
        expected = f"{split}A/ and {split}B/ under {root}, with files of the same names"
        scanned = [_scan(folder, expected, None) for folder in folders]
        pairs, self.unmatched = match_pairs(folders[0], scanned[0], folders[1], scanned[1],
                                            strict=strict)
        if max_items is not None:
            pairs = pairs[:max_items]
        self._partner = dict(pairs)
        self._files = (_Files(folders[0], [a for a, _ in pairs], strict),)
        self.domains = resolve_domains(value_range, {
            "A": Domain([a for a, _ in pairs], in_channels),
            "B": Domain([b for _, b in pairs], out_channels)})

    def _sides(self, path_a: Path) -> tuple[np.ndarray, np.ndarray]:
        """The input and target arrays of the pair whose input file is ``path_a``."""
        path_b = self._partner[path_a]
        a = read_native(path_a, self.in_channels)
        b = read_native(path_b, self.out_channels)
        if a.shape[:2] != b.shape[:2]:
            raise DataError(f"the pair {printable_path(path_a)} and {printable_path(path_b)} "
                            f"has sides of different sizes ({a.shape[1]}x{a.shape[0]} and "
                            f"{b.shape[1]}x{b.shape[0]}); both sides must be the same size")
        return a, b

    def _target_path(self, path: Path) -> Path:
        return self._partner[path]
