"""The images an evaluation translates and compares with: a recipe's test split.

Test images are read the way the papers test: resized to the training crop size (square),
not flipped, not cropped. For paired data the targets are the ground truth of each input; for
unpaired data they are all real images of the target domain. A run on 8-bit images gets them
as ``uint8``, as always; a run in native units (16-bit, float, multiband, or a value range
other than 0..255: see :mod:`imtrans.evaluation.native_units`) gets the inputs normalised
with the ranges the generator trained with and the targets in their files' units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imtrans.catalogue.assembly import create_component
from imtrans.core.components import Components
from imtrans.core.contracts import TrainingDataset, is_paired
from imtrans.core.printable import printable_path
from imtrans.data.resolve import resolve_root
from imtrans.data.value_range import DomainValues, ValueRange
from imtrans.errors import EvaluationError, RecipeError
from imtrans.evaluation.native_reading import use_native_transform
from imtrans.evaluation.native_units import is_plain_8bit
from imtrans.inference.translator import to_uint8
from imtrans.recipe import Recipe

__all__ = ["TestSet", "load_test_set", "pick_split", "test_split_of"]


@dataclass(frozen=True)
class TestSet:
    """Inputs to translate and real target images, ``N x C x H x W``: both ``uint8`` for 8-bit
    runs; for a run in native units (:attr:`native`), the inputs ``float32`` in [-1, 1] (as
    the generator reads them) and the targets ``float32`` in native units.

    Attributes:
        inputs: The images given to the generator.
        targets: Real images of the target domain (ground truth when ``paired``).
        paired: Whether ``targets[i]`` is the true translation of ``inputs[i]``.
        root: The dataset folder read.
        split: The split read.
        size: The square side the images were resized to.
        skipped: Files among those read that could not be used (unreadable, too small...):
            left out, never replaced by another image, so no image is scored twice.
        input_values: The value range, type and bands of the inputs' domain (None: 8-bit).
        output_values: The same of the targets' domain, which the translations map back to.
    """

    inputs: Tensor
    targets: Tensor
    paired: bool
    root: Path
    split: str
    size: int
    skipped: tuple[Path, ...] = ()
    input_values: DomainValues | None = None
    output_values: DomainValues | None = None

    @property
    def native(self) -> bool:
        """Whether the images are in native units (not the ``uint8`` of an 8-bit run)."""
        return not (is_plain_8bit(self.input_values) and is_plain_8bit(self.output_values))


def pick_split(root: Path, split: str | None, paired: bool) -> str:
    """``split``, or by default ``test`` when the dataset has one, else ``val``: the folder
    ``<split>/`` of side-by-side pairs, or ``<split>A/`` of two folders (unpaired domains, or
    pairs matched by name)."""
    if split:
        return split
    for candidate in ("test", "val"):
        folders = ([root / candidate] if paired else []) + [root / f"{candidate}A"]
        if any(folder.is_dir() for folder in folders):
            return candidate
    raise EvaluationError(f"{root} has no test or val split; give one with --split")


def _stack(dataset: TrainingDataset, keys: tuple[str, ...], limit: int | None,
           native: bool = False) -> tuple[list[Tensor], list[Path]]:
    """The first ``limit`` items' images under ``keys``, one batch per key (``uint8``; as the
    items give them when ``native``), and the files among them that could not be used.

    For training, a dataset gives the next usable file in place of one it cannot read; scored,
    that stand-in would count one image twice. So an item that comes from another file than
    its own (or, for a dataset that does not say which file each entry is, a file already
    taken) is left out, and its file is counted as skipped.
    """
    count = len(dataset) if limit is None else min(limit, len(dataset))
    entry_path = getattr(dataset, "entry_path", None)
    path_key = f"{keys[0]}_path"
    items: list[Mapping[str, Any]] = []
    skipped: list[Path] = []
    taken: set[str] = set()
    for index in range(count):
        item = dataset[index]
        came_from = item.get(path_key)
        own = Path(entry_path(0, index)) if callable(entry_path) else None
        if own is not None and came_from is not None and Path(came_from) != own:
            skipped.append(own)  # a stand-in: its own file is unusable
            continue
        if came_from is not None and came_from in taken:
            skipped.append(Path(came_from))
            continue
        if came_from is not None:
            taken.add(came_from)
        items.append(item)
    if not items:
        raise EvaluationError(f"none of the {count} test image files read could be used "
                              f"(the first: {printable_path(skipped[0])})")
    convert = (lambda image: image) if native else to_uint8
    return [torch.stack([convert(item[key]) for item in items]) for key in keys], skipped


def test_split_of(recipe: Recipe, registry: Components, split: str | None = None,
                  data_root: Path | str | None = None) -> tuple[Path, str, bool]:
    """The dataset folder, split and pairing an evaluation of ``recipe`` reads, found without
    reading an image (``split`` and ``data_root`` as in :func:`load_test_set`).

    Raises:
        EvaluationError: the dataset has no root folder, or the folder no such split.
    """
    kwargs = recipe.data.kwargs
    if "root" not in kwargs and data_root is None:
        raise EvaluationError(f"dataset {recipe.data.name!r} has no root folder to evaluate on")
    root = resolve_root(data_root or kwargs["root"], recipe.data.catalog).path
    paired = is_paired(registry.datasets.get(recipe.data.name).builder)
    return root, pick_split(root, split, paired), paired


def _range(values: DomainValues | None) -> ValueRange | None:
    return None if values is None else values.range


def load_test_set(recipe: Recipe, registry: Components, *, direction: str = "AtoB",
                  split: str | None = None, data_root: Path | str | None = None,
                  max_images: int | None = None, input_values: DomainValues | None = None,
                  output_values: DomainValues | None = None) -> TestSet:
    """Read the test split of ``recipe``'s dataset for translating in ``direction``.

    Args:
        recipe: The recipe the model was trained with (its dataset, root, channels, size).
        registry: Components to build the dataset with.
        direction: ``AtoB`` (the recipe's inputs to targets) or ``BtoA``.
        split: ``test``, ``val``... (default: ``test`` if present, else ``val``).
        data_root: Read this dataset folder instead of the recipe's ``data.root``.
        max_images: Use at most this many inputs and this many targets (the first, sorted).
        input_values, output_values: The value ranges, types and bands of the domains the
            generator reads and writes (a checkpoint's ``values``); None, or 8-bit in 0..255
            for both, reads the images as ``uint8`` as always; else in native units (see
            :class:`TestSet`).

    Raises:
        EvaluationError: no such split, or a dataset evaluation does not know how to read.
    """
    kwargs = dict(recipe.data.kwargs)
    root, split, paired = test_split_of(recipe, registry, split, data_root)
    size = int(kwargs.get("crop_size", 256))
    a_channels, b_channels = recipe.data.channels()
    testing = {"preprocess": "resize_and_crop", "load_size": size, "crop_size": size,
               "flip": False}
    native = not (is_plain_8bit(input_values) and is_plain_8bit(output_values))
    # The inputs' range (None is 8-bit data); the targets stay in native units (None).
    reads = _range(input_values) or ValueRange(0.0, 255.0)
    if native and "value_range" in kwargs and input_values and output_values:
        # The ranges trained with: an "auto" range is not computed again on the test split.
        recipe_a, recipe_b = ((input_values, output_values) if direction == "AtoB"
                              else (output_values, input_values))
        kwargs["value_range"] = {"A": recipe_a.range.as_list(), "B": recipe_b.range.as_list()}
    try:
        if paired:
            dataset = create_component(registry, "datasets", recipe.data.name, "data",
                                       kwargs | testing | {"root": str(root), "split": split})
            if native:  # the dataset's A is the recipe's input, the target of BtoA
                use_native_transform(dataset, (reads, None) if direction == "AtoB"
                                     else (None, reads))
            (inputs, targets), skipped = _stack(dataset, ("A", "B"), max_images, native)
            if direction == "BtoA":
                inputs, targets = targets, inputs
        else:
            folders = [root / f"{split}A", root / f"{split}B"]
            if kwargs.get("direction") == "BtoA":
                folders.reverse()  # the recipe's A domain lives in <split>B
            channels = [a_channels, b_channels]
            if direction == "BtoA":
                folders.reverse()
                channels.reverse()
            # The recipe's resize filter, when not the default (kwargs holds it only then).
            chosen = {k: kwargs[k] for k in ("resize_filter",) if k in kwargs}
            sets = [create_component(registry, "datasets", "single", "data",
                                     testing | chosen | {"root": str(f), "in_channels": c})
                    for f, c in zip(folders, channels, strict=True)]
            if native:
                for dataset, side in zip(sets, (reads, None), strict=True):
                    use_native_transform(dataset, (side,))
            stacked = [_stack(s, ("A",), max_images, native) for s in sets]
            (inputs,), (targets,) = (images for images, _ in stacked)
            skipped = [path for _, paths in stacked for path in paths]
    except RecipeError as exc:
        raise EvaluationError(f"cannot read the {split} split of {root}: {exc}") from None
    return TestSet(inputs, targets, paired, root, split, size, tuple(skipped),
                   input_values, output_values)
