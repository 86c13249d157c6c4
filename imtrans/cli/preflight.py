"""What ``imtrans run`` refuses before its first step, checked without training.

``imtrans validate`` promises that a recipe it accepts runs. Loading a recipe checks its
values (:func:`imtrans.catalogue.recipe_loader.load_recipe`); the checks here need the machine as
well: the data folders are listed and their first usable image read, the run's output folder
can hold a run directory, ``data.cache = "device"`` suits the data, and the evaluation during
training finds its test split and Inception weights. ``imtrans validate`` and ``imtrans run`` both
call :func:`check_runnable`, so a recipe that one refuses the other refuses too, with the
same line, and ``run`` refuses before it makes a run directory or starts a process.
"""

from __future__ import annotations

from pathlib import Path

from imtrans.core.components import Components
from imtrans.core.observer import TrainingObserver
from imtrans.recipe import Recipe

__all__ = ["check_runnable"]


def check_runnable(recipe: Recipe, registry: Components, *, new_run: bool = True,
                   observer: TrainingObserver | None = None) -> None:
    """Refuse what training ``recipe`` here would refuse before its first step.

    Args:
        recipe: A loaded recipe.
        registry: The components it was loaded with.
        new_run: Whether the run makes a new run directory under ``run.output_dir`` (not a
            resume, which writes into the run it continues).
        observer: Receives notices (the bundled-sample fallback); default: none.

    Raises:
        ImtransError: a ``RecipeError`` for an output folder that cannot hold a run, a
            ``DataError`` for data folders that are missing or hold no usable image, a
            ``RecipeError`` for ``data.cache = "device"`` with data it cannot hold, an
            ``EvaluationError`` for ``[eval]`` that cannot run (no test split, a metric the
            data does not give, missing or untrusted Inception weights).
    """
    from imtrans.data.batches import check_cache_mode
    from imtrans.data.build import build_dataset
    from imtrans.evaluation.periodic import check_evaluation
    from imtrans.runs.directory import check_output_dir

    if new_run:  # run.name is checked when the recipe loads
        check_output_dir(Path(recipe.run.output_dir))
    dataset, _ = build_dataset(recipe, registry, observer or TrainingObserver())  # lists
    check_cache_mode(recipe, dataset)
    # The first usable item, as the sample batch takes it: a folder where no file is an
    # image is refused here, with the dataset's own error (the files it skips are warned of).
    dataset[0]
    check_evaluation(recipe, registry)
