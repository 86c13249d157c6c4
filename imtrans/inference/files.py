"""Translating image files: find the inputs, decode them in workers, batch, write the outputs.

Inputs are a file, a folder (searched recursively) or a glob pattern. Outputs keep each input's
name and, for a folder, its relative path; images of the same size are translated together.
A file that cannot be read is skipped with a warning and counted, never fatal; a file that
cannot be written (read-only folder, full disk) stops the translation with an error.

Inputs are read in their own sample type (:func:`~imtrans.data.native_images.read_native`:
16-bit, signed, float, any band count) and normalised with the checkpoint's input range;
outputs are written as :class:`~imtrans.inference.output_types.OutputType` says: by default
the target domain's own type and units (``int16`` TIFFs in Hounsfield units for a CT run).
8-bit runs read and write exactly as they always did.

No output may replace an input: :func:`plan_outputs` refuses, before any work, an output that
is an input file, an output inside the folder the input is searched in (a later run would
translate the outputs again), and two inputs that would be written to one file (``a.jpg`` and
``a.png`` with ``--format png``).
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from imtrans.core.atomic import atomic_path, atomic_write
from imtrans.core.paths import refuse_overwrite
from imtrans.core.printable import printable_path
from imtrans.core.regular_files import check_regular_file
from imtrans.data.image_writing import encode_image
from imtrans.data.images import IMAGE_EXTENSIONS, MAX_FOLDER_DEPTH, find_images
from imtrans.data.native_images import read_native
from imtrans.data.value_range import DomainValues, to_network_tensor
from imtrans.errors import DataError
from imtrans.inference.background_writer import output_writer
from imtrans.inference.budget import ImageBudget
from imtrans.inference.output_types import OutputType, output_type
from imtrans.inference.tiling import padded_size
from imtrans.inference.translator import Translator, input_range

__all__ = ["NAME_TOO_LONG", "TranslationSummary", "output_is_file", "over_budget",
           "plan_outputs", "translate_files"]

_GLOB_CHARACTERS = set("*?[")

#: Why an input is skipped whose output name the file system refuses as too long.
NAME_TOO_LONG = "its output name is too long for the file system"


@dataclass
class TranslationSummary:
    """What a translation of files did."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def output_is_file(output: str | Path) -> bool:
    """Whether ``output`` names one image file (an image extension, not an existing folder)
    rather than a folder; :func:`plan_outputs` decides by this rule."""
    output = Path(output)
    return output.suffix.lower() in IMAGE_EXTENSIONS and not output.is_dir()


def plan_outputs(source: str | Path, output: str | Path,
                 suffix: str | Callable[[Path], str] | None = None) -> list[tuple[Path, Path]]:
    """Pair every input image with the path its translation goes to.

    Args:
        source: An image file, a folder (recursive) or a glob pattern (``**`` recurses).
        output: A file (when ``source`` is one file and ``output`` has an image extension) or
            a folder.
        suffix: Replace every output's extension (``.png``, say), or a function giving the
            extension of each input's output (:meth:`OutputType.suffix_for
            <imtrans.inference.output_types.OutputType.suffix_for>`); default: keep the
            input's. A single output file keeps the name it is given.

    Raises:
        DataError: nothing matches ``source``, ``output`` is a file for several inputs, or an
            output would replace an input or be read back as one (see the module docstring).
    """
    source_text, output = str(source), Path(output)
    path = Path(source_text)
    trees: list[Path] = []  # folders the input is searched in recursively
    if path.is_file():
        inputs, base = [path], path.parent
    elif path.is_dir():
        inputs, base = find_images(path), path
        trees = [path]
    elif _GLOB_CHARACTERS & set(source_text):
        # Not only regular files: a FIFO or device named like an image is skipped and counted
        # when it is read (never opened), as a folder's listing does.
        try:
            if "**" in source_text:  # before glob, which follows a link loop 40 levels deep
                _refuse_link_loops(source_text, _glob_base(source_text))
            inputs = sorted(Path(p) for p in glob.glob(source_text, recursive=True)
                            if not Path(p).is_dir() and Path(p).suffix.lower() in IMAGE_EXTENSIONS)
        except RecursionError:  # glob recurses once per folder level under a "**"
            raise DataError(f"input {source_text}: its ** reaches folders nested too deeply "
                            "to search; give the folder instead (folders are searched "
                            f"{MAX_FOLDER_DEPTH} levels deep)") from None
        base = _glob_base(source_text)
        if "**" in source_text:
            trees = [base]
    elif os.path.lexists(source_text):  # a FIFO, a device, a link loop: never opened
        try:
            check_regular_file(source_text, what="input", error=DataError)
        except DataError as exc:
            raise DataError(f"{exc}; give an image file, a folder or a glob pattern") from None
        raise DataError(f"input {source_text} is not readable")  # unreachable: is_file above
    else:
        raise DataError(f"input {source_text} does not exist")
    if not inputs:
        raise DataError(f"no images found at {source_text} (looked for "
                        f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
    if output_is_file(output):
        if len(inputs) > 1:
            raise DataError(f"output {output} is a file name but {len(inputs)} images match "
                            f"{source_text}; give a folder")
        pairs = [(inputs[0], output)]
    else:
        pairs = []
        for item in inputs:
            relative = item.relative_to(base) if item.is_relative_to(base) else Path(item.name)
            target = output / relative
            new_suffix = suffix(item) if callable(suffix) else suffix
            pairs.append((item, target.with_suffix(new_suffix) if new_suffix else target))
    _refuse_overwrite(source_text, output, pairs, trees)
    return pairs


def _refuse_overwrite(source: str, output: Path, pairs: list[tuple[Path, Path]],
                      trees: list[Path]) -> None:
    """Refuse outputs that replace an input, that the input's search would read back, or that
    two inputs share."""
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
    if not output_is_file(output):
        # The output folder itself first, so that `photos/ photos/` is named as such.
        refuse_overwrite([], [output], trees=trees)
    refuse_overwrite(sources, targets, trees=trees, sources=sources)
    if trees or not _GLOB_CHARACTERS & set(source):
        return
    # A glob without ** reads one level per part: an output it matches is read back next time.
    for target in targets:
        if _glob_matches(source, target):
            raise DataError(f"output {target} matches the input pattern {source}: a later run "
                            "would take the outputs for inputs; choose an output it does not "
                            "match")


def _glob_matches(pattern: str, path: Path) -> bool:
    """Whether ``glob.glob(pattern)`` (a pattern without ``**``) would list ``path``."""
    wanted = Path(os.path.abspath(pattern)).parts
    parts = Path(os.path.abspath(path)).parts
    return len(wanted) == len(parts) and all(
        fnmatch.fnmatchcase(part, want) for part, want in zip(parts, wanted, strict=True))


def _refuse_link_loops(pattern: str, base: Path) -> None:
    """Refuse a ``**`` pattern whose folders hold a link back to a folder it lies in.

    ``glob`` follows links to folders and stops only at the system's 40 links: two such
    links made 2**40 paths to search, and one translated every image 41 times.

    Raises:
        DataError: naming the link and the folder it leads back to.
    """
    # Each folder's real path, found from its parent's (one readlink per link, not per level).
    real = {str(base): os.path.realpath(base)}
    for folder, dirs, _ in os.walk(base, followlinks=True):
        for name in dirs:
            child = os.path.join(folder, name)
            if not os.path.islink(child):
                real[child] = os.path.join(real[folder], name)
                continue
            real[child] = target = os.path.realpath(child)
            above: str | None = folder
            while above is not None:  # the folders the link lies in, up to the base
                if real[above] == target:
                    raise DataError(
                        f"input {pattern}: its ** would follow {printable_path(child)} back "
                        f"into {printable_path(target)}, a folder it is in, again and again; "
                        "remove the link, or give the folder instead (folders are listed "
                        "without following links)")
                above = os.path.dirname(above) if above != str(base) else None


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard."""
    parts = []
    for part in Path(pattern).parts:
        if _GLOB_CHARACTERS & set(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path()


class _TooLarge(str):
    """Why an image is refused by the memory budget: a skip among several inputs, the error
    when it is the only one."""

    __slots__ = ()


def over_budget(reason: str) -> bool:
    """Whether a skip reason of :class:`TranslationSummary` is a refusal by the memory
    budget (not an unreadable file)."""
    return isinstance(reason, _TooLarge)


class _Decoded(Dataset[tuple[int, Tensor | str]]):
    """Decodes input ``index`` in a worker, in its own sample type, normalised with the input
    domain's ``values`` (:func:`~imtrans.inference.translator.input_range`; 8-bit images of
    8-bit runs get ``to_tensor``'s exact values); a failure is returned as its message, not
    raised. An image the memory budget refuses from its header is never decoded."""

    def __init__(self, paths: list[Path], channels: int,
                 budget: ImageBudget | None = None,
                 values: DomainValues | None = None) -> None:
        self.paths, self.channels, self.budget = paths, channels, budget
        self.values = values

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Tensor | str]:
        refusal = self.budget.refusal(self.paths[index]) if self.budget else None
        if refusal is not None:
            return index, _TooLarge(refusal)
        try:
            array = read_native(self.paths[index], self.channels)
            return index, to_network_tensor(array, input_range(self.values, array.dtype))
        except DataError as exc:
            return index, str(exc)


def _batches(items: Iterator[tuple[int, Tensor | str]], batch_size: int,
             on_error: Callable[[int, str], None],
             capacity: Callable[[Tensor], int] = lambda image: 1 << 62,
             ) -> Iterator[tuple[list[int], Tensor]]:
    """Group decoded images of equal shape into batches of up to ``batch_size``, and of up to
    ``capacity(image)`` (what fits in the memory budget; 1: the image goes alone)."""
    pending: dict[tuple[int, ...], list[tuple[int, Tensor]]] = {}
    for index, item in items:
        if isinstance(item, str):
            on_error(index, item)
            continue
        bucket = pending.setdefault(tuple(item.shape), [])
        bucket.append((index, item))
        if len(bucket) >= min(batch_size, capacity(item)):
            yield [i for i, _ in bucket], torch.stack([t for _, t in bucket])
            bucket.clear()
    for bucket in pending.values():
        if bucket:
            yield [i for i, _ in bucket], torch.stack([t for _, t in bucket])


def translate_files(translator: Translator, pairs: list[tuple[Path, Path]], *,
                    batch_size: int = 8, num_workers: int = 2, seed: int = 0,
                    on_progress: Callable[[int], None] | None = None,
                    on_skip: Callable[[Path, str], None] | None = None,
                    on_write: Callable[[Path], None] | None = None,
                    max_memory: int | None = None,
                    output: OutputType | None = None) -> TranslationSummary:
    """Translate every ``(input, output)`` pair; write each output as soon as it is ready.

    Args:
        translator: The loaded generator.
        pairs: From :func:`plan_outputs`.
        batch_size: Images of one size translated together.
        num_workers: Decoding processes (0: decode in this process).
        seed: Seeds dropout in ``paper`` mode, so a run can be repeated exactly.
        on_progress: Called with the number of inputs handled so far (written or skipped).
        on_skip: Called with a path and the reason it was skipped.
        on_write: Called with each output just written.
        max_memory: Bytes translating one image may take (default:
            :func:`~imtrans.inference.budget.default_budget`). An image whose header declares
            more pixels than that allows is skipped without being decoded
            (:class:`~imtrans.inference.budget.ImageBudget`); an image large enough to be
            tiled is translated alone, and other images are batched only as many as fit in
            it together.
        output: How the outputs are written (sample type, values); default: the target
            domain's own type and units (:func:`~imtrans.inference.output_types.output_type`
            of the translator's ``output_values``), 8-bit for 8-bit runs. Each output's file
            type is its name's suffix, from :func:`plan_outputs`: give it
            ``output.suffix_for`` so that each name gets a file type that holds the outputs
            (``plan_outputs(source, out, kind.suffix_for)`` then ``translate_files(...,
            output=kind)``; ``kind.check(targets)`` refuses a type that cannot, before any
            work). A file type that cannot hold them stops the translation with an error.

    Returns:
        The files written and those skipped (unreadable inputs, and outputs whose name is
        too long for the file system), with why.

    Raises:
        DataError: an output cannot be written (a read-only folder, a full disk); the outputs
            written before it stay, the one that failed leaves no file. Or the only input is
            beyond the memory budget.
    """
    summary = TranslationSummary()
    done = 0
    counting = threading.Lock()  # the writer thread and this one both count

    def advance(count: int) -> None:
        nonlocal done
        with counting:
            done += count
            if on_progress:
                on_progress(done)

    def skip(index: int, reason: str) -> None:
        if isinstance(reason, _TooLarge) and len(pairs) == 1:
            raise DataError(f"cannot translate {pairs[index][0]}: {reason}")
        summary.skipped.append((pairs[index][0], reason))
        if on_skip:
            on_skip(pairs[index][0], reason)
        advance(1)

    if output is None:
        output = output_type(translator.output_values, translator.out_channels)
    torch.manual_seed(seed)
    budget = ImageBudget.for_translator(translator, max_memory)
    dataset = _Decoded([source for source, _ in pairs], translator.in_channels, budget,
                       translator.input_values)

    def capacity(image: Tensor) -> int:
        """Images of this shape per batch: one when tiled (as translate_batch decides), else
        as many as fit in the budget together."""
        height, width = image.shape[-2:]
        multiple = translator.size_multiple
        if padded_size(height, multiple) * padded_size(width, multiple) > \
                translator.tile_size**2:
            return 1
        return budget.batch_capacity(width, height)

    def write(item: tuple[int, Tensor]) -> None:
        """Write one output (in the writer thread, while the next batch is translated)."""
        index, image = item
        target = pairs[index][1]
        try:
            _write(output.convert(image), target)
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
                # This name only (a long input name, a longer extension): others fit.
                skip(index, NAME_TOO_LONG)
                return
            # Not a skip: a write that fails once (full disk, read-only folder) fails for
            # every output, and the user must not read "skipped unreadable" as success.
            raise _write_error(exc, target, len(summary.written), len(pairs)) from exc
        summary.written.append(target)
        if on_write:
            on_write(target)
        advance(1)

    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers,
                        pin_memory=translator.device.type == "cuda")
    # Encoding (PNG's zlib, JPEG) runs in a thread beside the network where it has a core to
    # itself; its error stops the translation at the next batch, and the outputs already
    # queued are written first. A CPU network that fills every core writes in turn.
    with output_writer(write, translator.device) as writer:
        for indices, batch in _batches(iter(loader), batch_size, skip, capacity):
            outputs = translator.translate_batch(batch.to(translator.device, non_blocking=True))
            for index, image in zip(indices, outputs.cpu(), strict=True):
                writer.put((index, image))
    return summary


def _write_error(exc: OSError | ValueError, target: Path, written: int, total: int) -> DataError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return DataError(f"cannot write {printable_path(target)}: {reason} ({written} of {total} "
                     "image(s) written before it)")


def _write(array: np.ndarray, target: Path) -> None:
    """Write an ``H x W x C`` output to ``target`` in its own type (through a temporary name,
    so no half-written file). 8-bit gray, RGB and RGBA go through Pillow as they always did;
    other types and band counts through :func:`~imtrans.data.image_writing.encode_image`."""
    if array.dtype == np.uint8 and array.shape[2] in (1, 3, 4):
        _save(Image.fromarray(np.ascontiguousarray(
            array[:, :, 0] if array.shape[2] == 1 else array)), target)
        return
    data = encode_image(array, target.suffix)  # before any folder: a refusal leaves none
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, data)


def _save(image: Image.Image, target: Path) -> None:
    """Write ``image`` to ``target`` (through a temporary name, so no half-written file)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() in (".jpg", ".jpeg") and image.mode == "RGBA":
        image = image.convert("RGB")  # JPEG has no alpha channel
    with atomic_path(target) as partial:
        image.save(partial, format=Image.registered_extensions().get(target.suffix.lower()))
