"""The fit loop: build, restore, then train step by step, running the periodic jobs after each.

Read it top to bottom: :func:`fit` is the whole of training. Steps are counted globally; the
epoch is ``step // steps_per_epoch``, so a checkpoint needs only the step to resume exactly.
What happens between steps (records, samples, checkpoints, evaluation, the NaN watch, the
report) is a list of jobs (:mod:`imtrans.training.jobs`); ``jobs=`` adds more.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imtrans.catalogue.plugins import Components, components
from imtrans.core import distributed
from imtrans.core.atomic import remove_temporaries
from imtrans.core.device import seed_everything, select_device
from imtrans.core.observer import TrainingObserver
from imtrans.core.printable import printable_path
from imtrans.core.stop_signals import StopRequested
from imtrans.errors import CheckpointError, TrainingInterrupted
from imtrans.evaluation.periodic import PeriodicEvaluation
from imtrans.recipe.schema import Recipe
from imtrans.runs.checkpoints.files import list_checkpoints
from imtrans.runs.directory import RunDir, create_run_dir, write_run_record
from imtrans.runs.file_access import check_run_dir
from imtrans.runs.lock import RunLock, lock_run_dir
from imtrans.training.build import Training, build_training
from imtrans.training.jobs import Job, RolledBack, default_jobs
from imtrans.training.loss_log import MetricsLog
from imtrans.training.run_log import RunLog, open_trackers
from imtrans.training.state import TrainingState
from imtrans.training.train_log import LoggedObserver, TrainLog

__all__ = ["FitResult", "fit", "train"]


@dataclass(frozen=True)
class FitResult:
    """Where a finished run left its files."""

    run_dir: Path
    step: int
    checkpoint: Path | None


def fit(recipe: Recipe, *, registry: Components | None = None, resume: Path | None = None,
        run_dir: Path | None = None, observer: TrainingObserver | None = None,
        jobs: Sequence[Job] = (), allow_changes: bool = False) -> FitResult:
    """Train ``recipe``; with ``resume`` (a checkpoint), continue exactly where it stopped.

    ``registry``: the components (default: built-ins and plugins); ``run_dir``: where to write
    (default: the resumed run's, else a new one under ``run.output_dir``); ``observer``:
    progress and notices (default: silent); ``jobs``: periodic jobs run after the standard
    ones (:mod:`imtrans.training.jobs`); ``allow_changes``: resume with other task settings
    (see :func:`imtrans.training.checkpointing.task_changes`), recorded in the metrics. Returns the
    run directory, last step and checkpoint.
    Raises TrainingInterrupted after Ctrl-C or SIGTERM (a checkpoint of the step under way is
    saved first), and ImtransError for bad data, an incompatible checkpoint, ...
    """
    registry = registry or components()
    main = distributed.is_main_process()  # under torchrun, rank 0 alone speaks
    locks: list[RunLock] = []  # released however fit ends
    try:
        if resume is not None and main:
            found = RunDir.of_checkpoint(resume)
            if found is not None:  # before reading it: a run still writing there is refused
                locks.append(lock_run_dir(found.root))
        return _fit(recipe, registry, resume, run_dir, observer, jobs, allow_changes, locks)
    finally:
        for lock in locks:
            lock.release()


def _fit(recipe: Recipe, registry: Components, resume: Path | None, run_dir: Path | None,
         observer: TrainingObserver | None, jobs: Sequence[Job], allow_changes: bool,
         locks: list[RunLock]) -> FitResult:
    """:func:`fit` once the run resumed from is locked (``locks``, which this extends)."""
    main = distributed.is_main_process()
    observer = observer if observer is not None and main else TrainingObserver()
    ddp = distributed.join(select_device(recipe.run.device, observer))
    seed_everything(recipe.run.seed)
    training = build_training(recipe, registry, device=ddp.device, ddp=ddp, observer=observer,
                              initialise=resume is None)
    plan = training.plan
    assert training.data is not None and plan is not None and training.sample_batch is not None
    evaluation = PeriodicEvaluation.of(recipe, registry, ddp.device) if ddp.is_main else None
    state = TrainingState(plan, last_checkpoint=resume)
    resume_notes: list[str] = []
    changes: dict[str, list[Any]] = {}
    state.step = training.restore(resume, resume_notes, changes) if resume is not None else 0
    if changes and not allow_changes:
        raise CheckpointError(_refuse_changes(resume, changes))
    if resume is not None and state.finished:  # nothing to train: change no file
        ddp.close()
        found = RunDir.of_checkpoint(resume)
        observer.message(f"nothing to train: {resume} is at step {state.step} of "
                         f"{plan.total_steps}; raise train.max_steps (or the epochs) to train "
                         "longer. No file was changed.")
        return FitResult(found.root if found else resume.parent, state.step, resume)
    ddp.decorrelate_rng(recipe.run.seed, state.step)
    run, environment = _open_run_dir(training, registry, ddp, run_dir, resume, state,
                                     observer, locks)
    return _train(training, registry, ddp, run, environment, state, evaluation, observer,
                  resume, resume_notes, changes, jobs)


def _train(training: Training, registry: Components, ddp: distributed.Distributed, run: RunDir,
           environment: dict[str, Any], state: TrainingState,
           evaluation: PeriodicEvaluation | None, observer: TrainingObserver,
           resume: Path | None, resume_notes: list[str], changes: dict[str, list[Any]],
           jobs: Sequence[Job]) -> FitResult:
    """The training loop of :func:`fit`, in a run directory this process holds."""
    recipe, trainer, data, plan = training.recipe, training.trainer, training.data, training.plan
    step = training.step
    assert data is not None and plan is not None and step is not None
    if ddp.is_main:  # the notices and progress lines go to <run>/train.log too
        observer = LoggedObserver(observer, TrainLog(run.train_log))
    observer.message(f"resuming {run.root} from step {state.step} ({resume})" if resume
                     else f"run directory: {run.root}")
    for note in resume_notes:
        observer.message(f"warning: {note}")
    for note in evaluation.start_warnings if evaluation is not None else []:
        observer.message(f"warning: {note}")  # a small subset, non-standard Inception
    log = _open_log(recipe, registry, run, observer) if ddp.is_main else None
    if changes and log is not None:  # --allow-changes: the log says where the task changed
        log.write({"step": state.step, "resumed_with_changes": changes})
        observer.message("warning: resumed with other task settings: " + _listed(changes))
    run_jobs = [*default_jobs(training, run, ddp=ddp, observer=observer, evaluation=evaluation,
                              environment=environment, log=log), *jobs]
    observer.on_start(total_steps=plan.total_steps, start_step=state.step,
                      steps_per_epoch=plan.steps_per_epoch, epochs=plan.epochs,
                      images_per_step=plan.global_batch)
    state.start()
    trainer.train()
    try:
        with ddp.interrupts(observer.on_stopping):
            while not state.finished:
                done = state.begin_epoch()  # batches of this epoch already trained on
                training.schedule.begin_epoch(state.epoch)
                data.batches.set_epoch(state.epoch, start=done)
                try:
                    for batch in state.timed(data.batches):
                        state.advance(step(batch))
                        for job in run_jobs:
                            if job.due(state):
                                job.run(state)
                        if state.finished:
                            break
                except RolledBack:
                    continue  # the epoch's batches start again after the skipped ones
    except StopRequested:
        _finish(run_jobs, state)
        raise TrainingInterrupted(
            f"interrupted at step {state.step}; checkpoint saved to {state.last_checkpoint}. "
            f"Resume with: imtrans run RECIPE --resume {state.last_checkpoint}") from None
    except KeyboardInterrupt:  # a second Ctrl-C, in the middle of a step: that step is lost
        _salvage(run_jobs, state, observer)
        raise TrainingInterrupted(_stopped_at_once(state)) from None
    except BaseException:
        _salvage(run_jobs, state, observer)
        raise
    finally:
        observer.on_end()
        ddp.close()  # what follows involves no other rank
        _warn_skipped(data.skipped, observer)
    _finish(run_jobs, state)  # the trackers' job closes them last, after the final records
    return FitResult(run.root, state.step, state.last_checkpoint)


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
            a run directory or a checkpoint file.
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
    from imtrans.catalogue.recipe_loader import apply_override, load_recipe, recipe_from_dict
    from imtrans.runs.checkpoints.lookup import find_resume_point

    registry = registry or components()
    overrides = list(overrides)
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides, registry=registry)
    elif overrides:
        raw = recipe.resolved()
        for override in overrides:
            apply_override(raw, override)
        recipe = recipe_from_dict(raw, registry=registry)
    checkpoint = (find_resume_point(str(resume), recipe) if resume is not None else None)
    return fit(recipe, registry=registry, resume=checkpoint, run_dir=run_dir,
               observer=observer, jobs=jobs, allow_changes=allow_changes)


def _open_run_dir(training: Training, registry: Components, ddp: distributed.Distributed,
                  run_dir: Path | None, resume: Path | None, state: TrainingState,
                  observer: TrainingObserver, locks: list[RunLock]
                  ) -> tuple[RunDir, dict[str, Any]]:
    """Name (rank 0: create) the run directory, hold its lock (in ``locks``) and write its
    record; on a resume, cut the metrics after the checkpoint (they will be written again)
    and remove what a killed process was writing. A resume from a checkpoint older than its
    run's newest continues in a new branch directory. Returns the directory and the
    environment record.

    Raises:
        RunDirBusyError: another live process writes that run directory.
    """
    recipe = training.recipe
    if resume is not None and run_dir is None:
        found = RunDir.of_checkpoint(resume)  # a checkpoint outside a run starts a new one
        run_dir = found.root if found is not None else None
        if ddp.is_main and found is not None:  # locked by fit: no writer can be branched from
            run_dir = _branch_if_older(found, resume, state.step, observer)
    if ddp.is_main and run_dir is None:
        run_dir = create_run_dir(Path(recipe.run.output_dir),
                                 recipe.run.name or recipe.trainer.name)
    run = RunDir(ddp.share_path(run_dir))  # rank 0 created it; the others know its name
    if not ddp.is_main:
        return run, {}
    if not any(lock.path.parent == run.root for lock in locks):
        for lock in locks:  # a branch leaves the run it came from free
            lock.release()
        locks.append(lock_run_dir(run.root))  # before anything there is written or cleaned
    check_run_dir(run.root)  # no link inside it would take a write elsewhere
    return run, _write_run_start(training, registry, run, state)


def _write_run_start(training: Training, registry: Components, run: RunDir,
                     state: TrainingState) -> dict[str, Any]:
    """The run record, the folders, the metrics cut at the step resumed from, no temporaries."""
    recipe = training.recipe
    environment = write_run_record(run.root, recipe.resolved(), registry, training.device)
    run.samples.mkdir(parents=True, exist_ok=True)
    MetricsLog(run.metrics).truncate_after(state.step)
    for folder in (run.root, run.samples, run.checkpoints):  # what a killed process was writing
        remove_temporaries(folder)
    return environment


def _branch_if_older(found: RunDir, resume: Path, step: int, observer: TrainingObserver) -> Path:
    """``found``'s root, or, when ``resume`` is older than the run's newest checkpoint, a new
    branch directory beside it holding the run's metrics up to ``step``: the old run keeps
    every checkpoint and record, and no directory mixes two histories."""
    newest = list_checkpoints(found.checkpoints)
    if not newest or newest[-1][0] <= step:
        return found.root
    branch = create_run_dir(found.root.parent, f"{found.root.name}-from-step-{step}")
    if found.metrics.exists():
        shutil.copyfile(found.metrics, RunDir(branch).metrics)
        MetricsLog(RunDir(branch).metrics).truncate_after(step)
    observer.message(f"{resume} is older than the newest checkpoint of {found.root} (step "
                     f"{newest[-1][0]}): continuing in the new branch {branch}, which starts "
                     f"with the metrics up to step {step}; {found.root} is left as it was")
    return branch


def _listed(changes: dict[str, list[Any]]) -> str:
    return ", ".join(f"{path} {was!r} -> {now!r}" for path, (was, now) in changes.items())


def _refuse_changes(resume: Path | None, changes: dict[str, list[Any]]) -> str:
    return (f"resuming {resume} with other task settings than it was trained with: "
            f"{_listed(changes)}. A resume continues the same run: set them back; or start a "
            "new run from its weights ([init] from); or pass --allow-changes to continue with "
            "them (recorded in metrics.jsonl)")


def _open_log(recipe: Recipe, registry: Components, run: RunDir,
              observer: TrainingObserver) -> RunLog:
    """``metrics.jsonl`` and the recipe's logger backends, told the resolved recipe."""
    log = RunLog(run.metrics, open_trackers(recipe, registry, run.root), observer)
    log.hyperparameters(recipe.resolved())
    return log


def _finish(jobs: Sequence[Job], state: TrainingState) -> None:
    """Let every job complete its work (the last checkpoint, the report)."""
    for job in jobs:
        job.finish(state)


def _salvage(jobs: Sequence[Job], state: TrainingState, observer: TrainingObserver) -> None:
    """After a failure, let every job keep what was recorded; a job failing here is
    reported, and the others still run (the failure that stopped training is what counts)."""
    for job in jobs:
        try:
            job.salvage(state)
        except Exception as exc:
            observer.message(f"warning: after the failure, {type(job).__name__} could not "
                             f"save its part: {type(exc).__name__}: {exc}")


def _stopped_at_once(state: TrainingState) -> str:
    last = state.last_checkpoint
    saved = (f"the last checkpoint is {last}. Resume with: imtrans run RECIPE --resume {last}"
             if last is not None else "no checkpoint was written")
    return f"interrupted at once, during step {state.step + 1}, which is not saved; {saved}"


def _warn_skipped(skipped: list[str], observer: TrainingObserver) -> None:
    if skipped:
        observer.message(f"warning: skipped {len(skipped)} unusable image files, each "
                         f"replaced by the next usable one (set data.strict = true to stop "
                         f"instead): {', '.join(map(printable_path, skipped[:3]))}"
                         + (", ..." if len(skipped) > 3 else ""))
