"""What the end of a short run says: that its result is a smoke test, and what a real run of
the recipe needs.

A first run (the README's: 20 steps at 64x64 on the bundled sample) ends with samples that
look like noise, as any GAN's do after a few steps. Said nowhere, that reads as a failure;
:func:`short_run_lines` says it, with the recipe's own full settings (the run's overrides
left out) and where the full dataset comes from.
"""

from __future__ import annotations

from typing import Any

from imtrans.data.catalog import catalog_names
from imtrans.data.resolve import resolve_root
from imtrans.errors import DataError
from imtrans.recipe.schema import Recipe
from imtrans.report.sections import NOISY_SAMPLES_BELOW

__all__ = ["SMOKE_TEST_STEPS", "sample_dataset_lines", "short_run_lines"]

#: A run of fewer steps is a smoke test: its samples look like noise (the report says so too).
SMOKE_TEST_STEPS = NOISY_SAMPLES_BELOW


def short_run_lines(steps: int, full: Recipe, recipe_path: str, run: Recipe | None = None
                    ) -> list[str]:
    """The closing lines of a run that made fewer than :data:`SMOKE_TEST_STEPS` steps (none
    for a longer run).

    Args:
        steps: The step the run reached.
        full: The recipe as its file states it, without the run's ``--set`` overrides.
        recipe_path: The recipe file, as the user named it.
        run: The recipe the run trained with, overrides and all (default: ``full``): when it
            trained on the bundled sample of a missing dataset, a last line says where the
            full one comes from.

    Example:
        >>> from imtrans.catalogue.recipe_loader import load_recipe
        >>> full = load_recipe("recipes/cyclegan_photo2monet.toml")
        >>> short_run_lines(20, full, "recipes/cyclegan_photo2monet.toml")[0][:40]
        '20 steps is a smoke test: it shows that '
        >>> short_run_lines(5000, full, "recipes/cyclegan_photo2monet.toml")
        []
    """
    if steps >= SMOKE_TEST_STEPS:
        return []
    schedule, data = full.schedule, full.data
    epochs = schedule.n_epochs + schedule.n_epochs_decay
    decay = (f", then {schedule.n_epochs_decay} with {schedule.policy} decay"
             if schedule.n_epochs_decay else "")
    settings = [f"{epochs} epochs ({schedule.n_epochs} at lr {full.optim.lr:g}{decay})",
                *_image_size(data.kwargs), f"batch {data.batch_size}",
                f"generator {full.generator.name}"]
    lines = [
        f"{steps} step{'s' if steps != 1 else ''} is a smoke test: it shows that everything "
        "runs, not what the recipe learns; the samples look like noise until a few thousand "
        "steps.",
        f"A real run takes the recipe's full settings (`imtrans run {recipe_path}` without "
        f"--set): {', '.join(settings)}, on a GPU."]
    return lines + sample_dataset_lines(run or full)


def _image_size(kwargs: dict[str, Any]) -> list[str]:
    """``256x256 crops of 286x286 images``, as far as the dataset's arguments say."""
    crop, load = kwargs.get("crop_size"), kwargs.get("load_size")
    if crop is None:
        return []
    # Only resize_and_crop resizes to load_size first; "crop" crops the images as they are.
    resized = load and kwargs.get("preprocess", "resize_and_crop") == "resize_and_crop"
    return [f"{crop}x{crop} crops" + (f" of {load}x{load} images" if resized else "")]


def sample_dataset_lines(run: Recipe) -> list[str]:
    """Where the full dataset comes from, when the run's folder is missing and the bundled
    sample stood in (no line otherwise)."""
    root, catalog = run.data.kwargs.get("root"), run.data.catalog
    if root is None or catalog is None:
        return []
    try:
        resolved = resolve_root(root, catalog)
    except DataError:  # a root that is not a folder: the run itself said so
        return []
    if resolved.source != "sample":
        return []
    if catalog not in catalog_names():  # a sample of its own (ct_denoise): nothing to fetch
        return [f"{root} was missing: the bundled sample of {catalog} stood in; put your own "
                "data there to train on it."]
    return [f"The full dataset: `imtrans data download {catalog}` puts it in {root} "
            "(missing: the bundled sample stood in)."]
