"""What ``imtrans run`` refuses before its first step, checked without training.

``imtrans validate`` promises that a recipe it accepts runs. Loading a recipe checks its
values (:func:`imtrans.catalogue.recipe_loader.load_recipe`); the checks here need the machine as
well: the data folders are listed and their first usable image read, the run's output folder
can hold a run directory, ``data.cache = "device"`` suits the data, the evaluation during
training finds its test split and Inception weights, and the built-in trackers' packages
import. ``imtrans validate`` and ``imtrans run`` both
call :func:`check_runnable`, so a recipe that one refuses the other refuses too, with the
same line, and ``run`` refuses before it makes a run directory or starts a process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imtrans.core.components import Components
from imtrans.core.observer import TrainingObserver
from imtrans.recipe import Recipe

__all__ = ["check_runnable", "check_tracker_packages"]


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
            data does not give, missing or untrusted Inception weights), a
            ``MissingExtraError`` for a built-in tracker whose package does not import.
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
    check_tracker_packages(recipe, registry)


def check_tracker_packages(recipe: Recipe, registry: Components) -> None:
    """Import the packages of the recipe's built-in trackers (``[log] backends``), which
    their loggers import only when a run starts them, after its run directory is made.

    A plugin's tracker is not known here: it is started, as every tracker, when the run opens
    its records (a failure then removes the run directory it made, see ``imtrans run``).

    Raises:
        MissingExtraError: a package is missing or broken; the message names the extra.
    """
    from imtrans.loggers import import_extra

    packages = _builtin_tracker_packages()
    for name in recipe.log.trackers:
        builder = registry.loggers.get(name).builder
        extra, modules = packages.get(builder, ("", ()))
        for module in modules:
            import_extra(module, logger=name, extra=extra)


def _builtin_tracker_packages() -> dict[Any, tuple[str, tuple[str, ...]]]:
    """The extra and the modules each built-in tracker's logger imports when it starts."""
    from imtrans.loggers.mlflow import MlflowLogger
    from imtrans.loggers.tensorboard import TensorBoardLogger
    from imtrans.loggers.wandb import WandbLogger

    return {
        # The package first, so that a missing one is named as such (as the logger does).
        TensorBoardLogger: ("tensorboard", ("tensorboard", "torch.utils.tensorboard",
                                            "tensorboard.plugins.hparams.summary_v2")),
        WandbLogger: ("wandb", ("wandb",)),
        MlflowLogger: ("mlflow", ("mlflow", "mlflow.entities")),
    }
