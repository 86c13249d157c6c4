"""The fit loop: build, restore, then train step by step, running the periodic jobs after each.

Read it top to bottom: :func:`fit` is the whole of training. Steps are counted globally; the
epoch is ``step // steps_per_epoch``, so a checkpoint needs only the step to resume exactly.
What happens between steps (records, samples, checkpoints, evaluation, the NaN watch, the
report) is a list of jobs (:mod:`imtrans.engine.jobs`); ``jobs=`` adds more.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imtrans.atomic import remove_temporaries
from imtrans.engine import distributed
from imtrans.engine.build import Training, build_training
from imtrans.engine.device import seed_everything, select_device
from imtrans.engine.jobs import Job, RolledBack, default_jobs
from imtrans.engine.loss_log import MetricsLog
from imtrans.engine.observer import TrainingObserver
from imtrans.engine.state import TrainingState
from imtrans.errors import TrainingInterrupted
from imtrans.evaluation.periodic import PeriodicEvaluation
from imtrans.plugins import Components, components
from imtrans.recipe.schema import Recipe
from imtrans.rundir import RunDir, create_run_dir, write_run_record

__all__ = ["FitResult", "fit", "train"]


@dataclass(frozen=True)
class FitResult:
    """Where a finished run left its files."""

    run_dir: Path
    step: int
    checkpoint: Path | None


def fit(recipe: Recipe, *, registry: Components | None = None, resume: Path | None = None,
        run_dir: Path | None = None, observer: TrainingObserver | None = None,
        jobs: Sequence[Job] = ()) -> FitResult:
    """Train ``recipe``; with ``resume`` (a checkpoint), continue exactly where it stopped.

    ``registry``: the components (default: built-ins and plugins); ``run_dir``: where to write
    (default: the resumed run's, else a new one under ``run.output_dir``); ``observer``:
    progress and notices (default: silent); ``jobs``: periodic jobs run after the standard
    ones (:mod:`imtrans.engine.jobs`). Returns the run directory, last step and checkpoint.
    Raises TrainingInterrupted after Ctrl-C or SIGTERM (a checkpoint is saved first), and
    ImtransError for bad data, an incompatible checkpoint, ...
    """
    registry = registry or components()
    main = distributed.is_main_process()  # under torchrun, rank 0 alone speaks
    observer = observer if observer is not None and main else TrainingObserver()
    ddp = distributed.join(select_device(recipe.run.device, observer))
    seed_everything(recipe.run.seed)
    training = build_training(recipe, registry, device=ddp.device, ddp=ddp, observer=observer)
    trainer, data, plan = training.trainer, training.data, training.plan
    assert data is not None and plan is not None and training.sample_batch is not None
    evaluation = PeriodicEvaluation.of(recipe, registry, ddp.device) if ddp.is_main else None
    state = TrainingState(plan, last_checkpoint=resume)
    state.step = training.restore(resume) if resume is not None else 0
    ddp.decorrelate_rng(recipe.run.seed, state.step)
    run, environment = _open_run_dir(training, registry, ddp, run_dir, resume, state, observer)
    run_jobs = [*default_jobs(training, run, ddp=ddp, observer=observer, evaluation=evaluation,
                              environment=environment), *jobs]
    observer.on_start(total_steps=plan.total_steps, start_step=state.step,
                      steps_per_epoch=plan.steps_per_epoch, epochs=plan.epochs,
                      images_per_step=plan.global_batch)
    state.restart_window()
    trainer.train()
    try:
        with ddp.interrupts() if ddp.enabled else _sigterm_as_interrupt():
            while not state.finished:
                done = state.begin_epoch()  # batches of this epoch already trained on
                training.schedule.begin_epoch(state.epoch)
                data.batches.set_epoch(state.epoch, start=done)
                try:
                    for batch in data.batches:
                        state.advance(trainer.training_step(batch))
                        for job in run_jobs:
                            if job.due(state):
                                job.run(state)
                        if state.finished:
                            break
                except RolledBack:
                    continue  # the epoch's batches start again after the skipped ones
    except KeyboardInterrupt:
        _finish(run_jobs, state)
        raise TrainingInterrupted(
            f"interrupted at step {state.step}; checkpoint saved to {state.last_checkpoint}. "
            f"Resume with: imtrans run RECIPE --resume {state.last_checkpoint}") from None
    finally:
        observer.on_end()
        ddp.close()  # what follows involves no other rank
        _warn_skipped(data.skipped, observer)
    _finish(run_jobs, state)
    return FitResult(run.root, state.step, state.last_checkpoint)


#: The training entry point by the name the public API gives it (``imtrans.train``).
train = fit


def _open_run_dir(training: Training, registry: Components, ddp: distributed.Distributed,
                  run_dir: Path | None, resume: Path | None, state: TrainingState,
                  observer: TrainingObserver) -> tuple[RunDir, dict[str, Any]]:
    """Name (rank 0: create) the run directory and write its record; on a resume, cut the
    metrics after the checkpoint (they will be written again) and remove what a killed
    process was writing. Returns the directory and the environment record."""
    recipe = training.recipe
    if resume is not None and run_dir is None:
        found = RunDir.of_checkpoint(resume)  # a checkpoint outside a run starts a new one
        run_dir = found.root if found is not None else None
    if ddp.is_main and run_dir is None:
        run_dir = create_run_dir(Path(recipe.run.output_dir),
                                 recipe.run.name or recipe.trainer.name)
    run = RunDir(ddp.share_path(run_dir))  # rank 0 created it; the others know its name
    if resume is not None:
        observer.message(f"resuming {run.root} from step {state.step} ({resume})")
    if not ddp.is_main:
        return run, {}
    environment = write_run_record(run.root, recipe.resolved(), registry, training.device)
    run.samples.mkdir(parents=True, exist_ok=True)
    MetricsLog(run.metrics).truncate_after(state.step)
    for folder in (run.root, run.samples, run.checkpoints):  # what a killed process was writing
        remove_temporaries(folder)
    return run, environment


def _finish(jobs: Sequence[Job], state: TrainingState) -> None:
    """Let every job complete its work (the last checkpoint, the report)."""
    for job in jobs:
        job.finish(state)


def _warn_skipped(skipped: list[str], observer: TrainingObserver) -> None:
    if skipped:
        observer.message(f"warning: skipped {len(skipped)} unusable image files, each "
                         f"replaced by the next usable one (set data.strict = true to stop "
                         f"instead): {', '.join(skipped[:3])}"
                         + (", ..." if len(skipped) > 3 else ""))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C (save, then stop) while training in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
