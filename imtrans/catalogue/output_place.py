"""A run directory never lies inside the data it trains or evaluates on.

The folder datasets read their split folders recursively (``root/train``, ``root/trainA``...;
a dataset without splits reads ``root`` itself). A run directory inside one would have its
sample grids, and anything else it writes as an image, read back as training or test images
by the next run. :func:`check_output_outside_data` refuses that when the recipe loads, so
``imtrans validate`` and ``imtrans run`` refuse it alike, before any folder is made.
"""

from __future__ import annotations

from pathlib import Path

from imtrans.core.paths import real_path
from imtrans.core.registry import accepted_arguments
from imtrans.errors import DataError, RecipeError
from imtrans.recipe.schema import Recipe

__all__ = ["SPLIT_NAMES", "check_output_outside_data"]

#: The split folders a dataset may read, besides the recipe's own ``split`` and eval split.
SPLIT_NAMES = ("train", "test", "val")


def _data_folders(root: Path, splits: set[str], reads_root: bool) -> list[tuple[Path, Path]]:
    """``(folder as named, folder with links resolved)`` of every data folder under root."""
    if reads_root:
        return [(root, real_path(root))]
    folders = [root / f"{split}{domain}" for split in sorted(splits) for domain in ("", "A", "B")]
    return [(folder, real_path(folder)) for folder in folders]


def check_output_outside_data(recipe: Recipe, builder: object) -> None:
    """Refuse a run directory (``run.output_dir``/name) inside one of the dataset's folders.

    Args:
        recipe: The validated recipe.
        builder: The dataset's builder: one without a ``split`` argument reads its ``root``
            as a whole.

    Raises:
        RecipeError: naming ``run.output_dir`` and the data folder.
    """
    kwargs = recipe.data.kwargs
    root = kwargs.get("root")
    if not isinstance(root, str | Path) or not str(root):
        return
    roots = [Path(root)]
    try:  # a missing catalog dataset trains on the bundled sample: guard it too
        from imtrans.data.resolve import resolve_root

        roots.append(resolve_root(root, recipe.data.catalog).path)
    except DataError:
        pass
    splits = {*SPLIT_NAMES, *(str(kwargs[key]) for key in ("split",) if kwargs.get(key))}
    if recipe.eval.split:
        splits.add(recipe.eval.split)
    reads_root = callable(builder) and "split" not in accepted_arguments(builder)
    name = recipe.run.name or recipe.trainer.name
    run_dir = real_path(Path(recipe.run.output_dir) / name)
    for data_root in dict.fromkeys(roots):
        for folder, real in _data_folders(data_root, splits, reads_root):
            if run_dir.is_relative_to(real):
                raise RecipeError(
                    f"run.output_dir = {recipe.run.output_dir!r}: the run directory would lie "
                    f"inside the data folder {folder}, which the dataset reads: its sample "
                    "grids would be read back as images of the data; choose a "
                    "run.output_dir outside the dataset")
