"""Building an aligned (pix2pix) dataset from two folders of matching images.

This is what the official ``combine_A_and_B.py`` does (``--fold_A --fold_B --fold_AB``): for
each image in ``A/`` the image with the same name in ``B/`` is pasted to its right, and the pair
is written to ``OUT/`` under A's name. Names match on the relative path without the extension,
searched recursively, so ``A/train/1.jpg`` pairs with ``B/train/1.png``.

Split folders: when ``A/`` holds any of ``train/ val/ test/``, each of those is combined into
the same split of ``OUT/`` (the official layout); otherwise the whole of ``A/`` is combined
into ``OUT/`` directly.

Sizes: pix2pix needs both halves the same size. A B image whose size differs from its A image
is resized to A's size (bicubic) and counted in :attr:`CombineResult.resized`; pass
``resize_b=False`` to get a :class:`~imtrans.errors.DataError` instead, e.g. for label maps
whose colours must stay exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from imtrans.core.atomic import atomic_path
from imtrans.core.paths import refuse_overwrite
from imtrans.core.regular_files import why_not_folder
from imtrans.data.images import find_images, load_image
from imtrans.errors import DataError
from imtrans.runs.output_guard import guard_outputs

__all__ = ["DEFAULT_SPLITS", "CombineResult", "combine_aligned"]

#: The split folder names that are mirrored when ``A/`` has them.
DEFAULT_SPLITS: tuple[str, ...] = ("train", "val", "test")

_JPEG = (".jpg", ".jpeg")


@dataclass(frozen=True)
class CombineResult:
    """What :func:`combine_aligned` did.

    Attributes:
        out: The output folder.
        written: How many A|B images were written.
        per_split: Images written per split (``""`` when there are no split folders).
        missing_in_b: Relative paths (``split/name`` with splits) in A with no partner in B.
        missing_in_a: Relative paths in B with no partner in A.
        resized: How many B images were resized to their A image's size.
    """

    out: Path
    written: int
    per_split: dict[str, int] = field(default_factory=dict)
    missing_in_b: tuple[str, ...] = ()
    missing_in_a: tuple[str, ...] = ()
    resized: int = 0


def _index(folder: Path) -> dict[str, Path]:
    """Map each image's relative path without extension to the image."""
    try:
        paths = find_images(folder)
    except DataError:
        return {}  # a missing or empty split: its partners are reported as missing
    found: dict[str, Path] = {}
    for path in paths:
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in found:
            raise DataError(f"{found[key]} and {path} have the same name; each name in a folder "
                            "to combine must be unique whatever the extension")
        found[key] = path
    return found


def _pair(path_a: Path, path_b: Path, resize_b: bool) -> tuple[Image.Image, bool]:
    """A and B side by side, and whether B had to be resized."""
    a, b = load_image(path_a), load_image(path_b)
    resized = a.size != b.size
    if resized and not resize_b:
        raise DataError(f"{path_a} is {a.size[0]}x{a.size[1]} but {path_b} is "
                        f"{b.size[0]}x{b.size[1]}; make them the same size or allow resizing")
    if resized:
        b = b.resize(a.size, Image.Resampling.BICUBIC)
    mode = a.mode if a.mode == b.mode and a.mode in ("L", "RGB") else "RGB"
    pair = Image.new(mode, (2 * a.size[0], a.size[1]))
    pair.paste(a.convert(mode), (0, 0))
    pair.paste(b.convert(mode), (a.size[0], 0))
    return pair, resized


def combine_aligned(
    folder_a: Path | str,
    folder_b: Path | str,
    out: Path | str,
    *,
    split_names: Sequence[str] = DEFAULT_SPLITS,
    resize_b: bool = True,
    jpeg_quality: int = 95,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> CombineResult:
    """Write A|B side-by-side images for every name found in both ``folder_a`` and ``folder_b``.

    Each output keeps A's relative path and extension (JPEG is re-encoded at
    ``jpeg_quality``; PNG is lossless). An existing file of the same name in ``out`` is
    replaced only if an earlier combine wrote it, or with ``overwrite`` (see
    :mod:`imtrans.runs.output_guard`). Grayscale pairs stay grayscale; anything else is RGB.

    Args:
        folder_a: The A images (left halves), optionally in ``train/ val/ test/``.
        folder_b: The B images (right halves), laid out like ``folder_a``.
        out: The folder to write into; created when missing. It must not lie inside A or B,
            and no output may be an A or B file (checked before anything is written).
        split_names: The sub-folders of A treated as splits and mirrored.
        resize_b: Resize a B image to its A image's size when they differ (else raise).
        jpeg_quality: JPEG quality for ``.jpg`` outputs.
        progress: Called with ``(pairs done, pairs in all)`` after each pair.
        overwrite: Replace existing files in ``out`` that an earlier combine did not write.

    Returns:
        How many pairs were written, per split, which names had no partner, how many resized.

    Raises:
        DataError: A or B is not a folder, ``out`` lies inside one of them or an output
            would replace an A or B file, no name has a partner, two files in one folder
            share a name, an image cannot be read, or sizes differ with ``resize_b=False``.
        OSError: an output cannot be written (read-only folder, full disk); it leaves no
            partial file.

    Example:
        >>> result = combine_aligned("photos", "labels", "datasets/mine")  # doctest: +SKIP
        >>> result.written, result.missing_in_b  # doctest: +SKIP
        (400, ())
    """
    folder_a, folder_b, out = Path(folder_a), Path(folder_b), Path(out)
    for name, folder in (("A", folder_a), ("B", folder_b)):
        reason = why_not_folder(folder)  # a FIFO, a file, a link loop: said which
        if reason is not None:
            raise DataError(f"the {name} folder {folder} {reason}")
    # OUT inside A or B would be read back as input by the next combine.
    refuse_overwrite([], [out], trees=[folder_a, folder_b])
    splits = [s for s in split_names if (folder_a / s).is_dir()] or [""]
    jobs: list[tuple[str, Path, Path, Path]] = []
    missing_b: list[str] = []
    missing_a: list[str] = []
    read: list[Path] = []
    for split in splits:
        index_a, index_b = _index(folder_a / split), _index(folder_b / split)
        read += [*index_a.values(), *index_b.values()]
        prefix = f"{split}/" if split else ""
        for key in sorted(index_a):
            if key not in index_b:
                missing_b.append(prefix + index_a[key].relative_to(folder_a / split).as_posix())
                continue
            relative = index_a[key].relative_to(folder_a / split)
            jobs.append((split, index_a[key], index_b[key], out / split / relative))
        missing_a.extend(prefix + index_b[key].relative_to(folder_b / split).as_posix()
                         for key in sorted(set(index_b) - set(index_a)))
    if not jobs:
        shown = ", ".join(missing_b[:5]) + (" ..." if len(missing_b) > 5 else "")
        raise DataError(f"no image in {folder_a} has a partner of the same name in {folder_b}"
                        + (f" (A has {shown})" if shown else ""))
    # OUT may still hold A or B (B = OUT/train, say): no output may replace an input.
    refuse_overwrite(read, [target for *_, target in jobs],
                     sources=[path_a for _, path_a, _, _ in jobs])
    record = guard_outputs([target for *_, target in jobs], out, "data combine",
                           overwrite=overwrite)
    per_split: dict[str, int] = {}
    resized = 0
    for done, (split, path_a, path_b, target) in enumerate(jobs, start=1):
        pair, was_resized = _pair(path_a, path_b, resize_b)
        resized += was_resized
        target.parent.mkdir(parents=True, exist_ok=True)
        options = {"quality": jpeg_quality} if target.suffix.lower() in _JPEG else {}
        # Beside, then renamed: a failed write (full disk) leaves no half image.
        with atomic_path(target) as partial:
            pair.save(partial, format=Image.registered_extensions().get(target.suffix.lower()),
                      **options)
        record.add(target, "data combine")
        per_split[split] = per_split.get(split, 0) + 1
        if progress is not None:
            progress(done, len(jobs))
    return CombineResult(out=out, written=len(jobs), per_split=per_split,
                         missing_in_b=tuple(missing_b), missing_in_a=tuple(missing_a),
                         resized=resized)
