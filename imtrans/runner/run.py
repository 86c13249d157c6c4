"""Training a recipe as ``imtrans run`` does: the fit loop with evaluation and the report.

:func:`fit` takes a loaded recipe and a resolved checkpoint; :func:`train` (``imtrans.train``)
also takes a recipe file, ``--set`` overrides and what ``--resume`` takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from imtrans.catalogue.plugins import Components, components
from imtrans.core.observer import TrainingObserver
from imtrans.recipe.schema import Recipe
from imtrans.runner.jobs import EvaluationAndReport
from imtrans.runner.resumed_settings import keep_log_interval
from imtrans.training import loop
from imtrans.training.jobs import Job
from imtrans.training.records import RunNotices
from imtrans.training.run_session import FitResult

__all__ = ["FitResult", "fit", "train"]


def fit(recipe: Recipe, *, registry: Components | None = None, resume: Path | None = None,
        run_dir: Path | None = None, observer: TrainingObserver | None = None,
        jobs: Sequence[Job] = (), allow_changes: bool = False) -> FitResult:
    """Train ``recipe`` with evaluation during training and the report; with ``resume`` (a
    checkpoint), continue exactly where it stopped.

    ``registry``: the components (default: built-ins and plugins); ``run_dir``: where to write
    (default: the resumed run's, else a new one under ``run.output_dir``); ``observer``:
    progress and notices (default: silent); ``jobs``: periodic jobs run after the standard
    ones (:mod:`imtrans.training.jobs`); ``allow_changes``: resume with other task settings
    (see :func:`imtrans.training.checkpointing.task_changes`), recorded in the metrics.
    Every notice goes to the run's ``train.log``, those said before the run directory existed
    (the bundled-sample fallback) too; an ``observer`` that is a
    :class:`~imtrans.training.records.RunNotices` can add closing lines there after the run.
    Returns the run directory, last step and checkpoint.
    Raises TrainingInterrupted after Ctrl-C or SIGTERM (a checkpoint of the step under way is
    saved first), and ImtransError for bad data, an incompatible checkpoint, ...
    """
    registry = registry or components()
    recipe = keep_log_interval(recipe, resume)  # the records' spacing of the run resumed
    if not isinstance(observer, RunNotices):  # the notices before the run directory too
        observer = RunNotices(observer or TrainingObserver())  # go to train.log
    return loop.fit(recipe, registry=registry, resume=resume, run_dir=run_dir,
                    observer=observer, jobs=EvaluationAndReport(recipe, registry, jobs),
                    allow_changes=allow_changes)


def train(recipe: Recipe | str | Path, overrides: Iterable[str] = (), *,
          registry: Components | None = None, resume: str | Path | None = None,
          run_dir: Path | None = None, observer: TrainingObserver | None = None,
          jobs: Sequence[Job] = (), allow_changes: bool = False) -> FitResult:
    """Train a recipe (a :class:`Recipe` or a TOML path), as ``imtrans run`` does.

    Args:
        recipe: A loaded recipe, or the path of a recipe file.
        overrides: ``section.key=value`` strings, as ``--set`` takes them.
        registry: The components (default: built-ins and installed plugins).
        resume: Continue a run exactly: ``"latest"`` (the newest run of the recipe's name),
            a run directory or a checkpoint file; or ``"auto"``: resume the run directory
            ``run_dir`` (default ``run.output_dir/run.name``) if it holds a checkpoint, else
            start the run there (for jobs that rerun the same command; see
            :func:`imtrans.runs.checkpoints.lookup.resume_or_start`).
        run_dir: Where to write (default: see :func:`fit`).
        observer: Receives progress (a :class:`TrainingObserver`; default: silent).
        jobs: Periodic jobs of your own, run after the standard ones.
        allow_changes: Resume with other task settings than the checkpoint's (recorded).

    Returns:
        The run directory, the step reached and the last checkpoint.

    Raises:
        TrainingInterrupted: after Ctrl-C or SIGTERM (a checkpoint is saved first).
        ImtransError: a bad recipe, bad data, an incompatible checkpoint...
    """
    from imtrans.catalogue.recipe_loader import apply_overrides, load_recipe, recipe_from_dict
    from imtrans.runs.checkpoints.lookup import AUTO, find_resume_point, resume_or_start
    from imtrans.runs.directory import MadeRunDir, recording_made_run_dirs
    from imtrans.runs.failed_start import discard_failed_start

    registry = registry or components()
    overrides = list(overrides)
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides, registry=registry)
    elif overrides:
        raw = recipe.resolved()
        apply_overrides(raw, overrides, registry=registry)  # as --set: a swap keeps the weight
        recipe = recipe_from_dict(raw, registry=registry)
    if isinstance(resume, str) and resume == AUTO:  # a Path("auto") is a folder of that name
        found = resume_or_start(recipe, run_dir)
        checkpoint = found.checkpoint  # a resume writes into its checkpoint's run, as always
        run_dir = found.run_dir if checkpoint is None else None
    else:
        checkpoint = find_resume_point(str(resume), recipe) if resume is not None else None
    # A start that fails removes the run directory it made when it holds nothing of value, so
    # that calling again takes the same name (not NAME-2), as `imtrans run` does.
    fresh = MadeRunDir.to_make(run_dir) if checkpoint is None and run_dir is not None else None
    made = [fresh] if fresh is not None else []
    try:
        with recording_made_run_dirs(made if checkpoint is None else []):  # a branch stays
            return fit(recipe, registry=registry, resume=checkpoint, run_dir=run_dir,
                       observer=observer, jobs=jobs, allow_changes=allow_changes)
    except BaseException:  # an interrupted run that saved a checkpoint is kept
        for made_dir in made:
            discard_failed_start(made_dir.path, made_dir.outermost)
        raise
