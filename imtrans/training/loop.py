"""The fit loop: build, restore, then train step by step, running the periodic jobs after each.

Read it top to bottom: :func:`fit` is the whole of training. Steps are counted globally; the
epoch is ``step // steps_per_epoch``, so a checkpoint needs only the step to resume exactly.
What happens to the run directory around the steps (locks, branch, record, notes, how the run
ends) is :class:`~imtrans.training.run_session.RunSession`; what happens between steps
(records, samples, checkpoints, the NaN watch) is a list of jobs
(:mod:`imtrans.training.jobs`), to which ``jobs=`` adds. Evaluation during training and the
report are jobs of the floors above: :func:`imtrans.runner.fit` adds them, as ``imtrans run``
and :func:`imtrans.train` do; this :func:`fit` alone trains without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from imtrans.catalogue.plugins import Components, components
from imtrans.core import distributed
from imtrans.core.device import seed_everything, select_device
from imtrans.core.observer import TrainingObserver
from imtrans.recipe.schema import Recipe
from imtrans.trainers.base import set_train_mode
from imtrans.training.build import Training, build_training
from imtrans.training.jobs import ExtraJobs, Job, JobList, RolledBack, default_jobs
from imtrans.training.run_session import FitResult, RunSession
from imtrans.training.state import TrainingState
from imtrans.training.threads import torch_threads, training_threads

__all__ = ["FitResult", "fit"]


def fit(recipe: Recipe, *, registry: Components | None = None, resume: Path | None = None,
        run_dir: Path | None = None, observer: TrainingObserver | None = None,
        jobs: Sequence[Job] | ExtraJobs = (), allow_changes: bool = False) -> FitResult:
    """Train ``recipe``; with ``resume`` (a checkpoint), continue exactly where it stopped.

    ``registry``: the components (default: built-ins and plugins); ``run_dir``: where to write
    (default: the resumed run's, else a new one under ``run.output_dir``); ``observer``:
    progress and notices (default: silent); ``jobs``: periodic jobs run after the standard
    ones, or an :class:`~imtrans.training.jobs.ExtraJobs` placing jobs among them;
    ``allow_changes``: resume with other task settings (recorded in the metrics). Returns the
    run directory, last step and checkpoint. Raises TrainingInterrupted after Ctrl-C or
    SIGTERM (a checkpoint of the step under way is saved first), and ImtransError for bad
    data, an incompatible checkpoint...
    """
    registry, extra = registry or components(), ExtraJobs.of(jobs)
    with RunSession(resume, run_dir, allow_changes=allow_changes) as session:
        observer = observer if observer is not None and session.main else TrainingObserver()
        ddp = distributed.join(select_device(recipe.run.device, observer))
        seed_everything(recipe.run.seed)
        training = build_training(recipe, registry, device=ddp.device, ddp=ddp,
                                  observer=observer, initialise=resume is None)
        warnings = extra.prepare(training, ddp)  # may refuse the run: before any write
        state = session.restore(training)
        if state.finished:  # nothing to train: change no file
            ddp.close()
            return session.nothing_to_train(state, observer)
        ddp.decorrelate_rng(recipe.run.seed, state.step)
        threads = training_threads(recipe.run.threads, training.data, ddp.world_size)
        context = session.open(training, registry, ddp, state, observer, warnings)
        run_jobs, observer = JobList(default_jobs(context, extra)), context.observer
        observer.message(threads.notice)
        _begin(training, state, observer)
        with (torch_threads(threads),  # torch's CPU threads: restored after the last job
              session.ending(training, run_jobs, state, observer, ddp),  # finish or salvage
              ddp.interrupts(observer.on_stopping)):  # Ctrl-C: stop after the step under way
            while not state.finished:
                _train_epoch(training, state, run_jobs)
        return FitResult(context.run_dir.root, state.step, state.last_checkpoint)


def _begin(training: Training, state: TrainingState, observer: TrainingObserver) -> None:
    """Tell the observer the run's length, start the clocks, put the networks in training
    mode."""
    plan = state.plan
    observer.on_start(total_steps=plan.total_steps, start_step=state.step,
                      steps_per_epoch=plan.steps_per_epoch, epochs=plan.epochs,
                      images_per_step=plan.global_batch)
    state.start()
    set_train_mode(training.trainer)


def _train_epoch(training: Training, state: TrainingState, jobs: JobList) -> None:
    """Train the rest of the epoch ``state.step`` falls in, running the due jobs after each
    step. A rollback ends it early: the loop starts that epoch again, after the batches
    already done (or skipped)."""
    data, step = training.data, training.step
    assert data is not None and step is not None  # built with data
    done = state.begin_epoch()  # batches of this epoch already trained on
    training.schedule.begin_epoch(state.epoch)
    data.batches.set_epoch(state.epoch, start=done)
    try:
        for batch in state.timed(data.batches):
            state.advance(step(batch))
            jobs.after_step(state)
            if state.finished:
                return
    except RolledBack:
        return
