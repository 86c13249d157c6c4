"""The run directory through one fit: from the lock on the run resumed from to the end.

:class:`RunSession` is everything :func:`imtrans.training.loop.fit` does around the training
steps that concerns the run directory and the files in it, in the order it happens:

1. entered, it locks the run resumed from before its checkpoint is read, so a run still
   writing there is refused (the locks are released however fit ends);
2. :meth:`RunSession.restore`: the checkpoint's step, with its notes and task changes (a
   resume with other task settings is refused without ``allow_changes``);
3. :meth:`RunSession.open`: the run directory named (a resume from a checkpoint older than its
   run's newest continues in a branch), created and locked (a start in a given directory
   only if it holds no checkpoint), its record written, its metrics cut at the step resumed
   from and what a killed process was writing removed; every process checked to start at
   rank 0's step; then the greeting, the resume notes and warnings, and the records opened;
4. :meth:`RunSession.ending`: around the training loop, the end of the run: the jobs finish
   (a normal end, or a stop on request) or salvage what was recorded (a failure).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from imtrans.catalogue.plugins import Components
from imtrans.core import distributed
from imtrans.core.atomic import remove_temporaries
from imtrans.core.observer import TrainingObserver
from imtrans.core.printable import printable_path
from imtrans.core.stop_signals import SignalInterrupted, StopRequested
from imtrans.data.resolve import resolve_root
from imtrans.errors import CheckpointError
from imtrans.recipe.schema import Recipe
from imtrans.runs.checkpoints.files import list_checkpoints
from imtrans.runs.checkpoints.lookup import check_start_in
from imtrans.runs.directory import RunDir, create_run_dir, write_run_record
from imtrans.runs.file_access import check_run_dir
from imtrans.runs.lock import RunLock, lock_run_dir
from imtrans.training.build import Training
from imtrans.training.jobs import JobContext, JobList
from imtrans.training.records import LoggedObserver, MetricsLog, RunLog, TrainLog, open_trackers
from imtrans.training.state import TrainingState

__all__ = ["FitResult", "RunSession"]


@dataclass(frozen=True)
class FitResult:
    """Where a finished run left its files."""

    run_dir: Path
    step: int
    checkpoint: Path | None


class RunSession:
    """The run directory of one fit, and the lock held on it (a context manager).

    Args:
        resume: The checkpoint resumed from, if any.
        run_dir: Where to write (default: the resumed run's, else a new one under
            ``run.output_dir``).
        allow_changes: Resume with other task settings than the checkpoint's (recorded).
    """

    def __init__(self, resume: Path | None, run_dir: Path | None, *,
                 allow_changes: bool = False) -> None:
        self.resume, self.run_dir, self.allow_changes = resume, run_dir, allow_changes
        self.main = distributed.is_main_process()  # under torchrun, rank 0 alone speaks
        self.locks: list[RunLock] = []  # released however fit ends
        self.notes: list[str] = []  # what differs in the continuation of the resumed run
        self.changes: dict[str, list[Any]] = {}  # the task settings that differ from it

    def __enter__(self) -> RunSession:
        if self.resume is not None and self.main:
            found = RunDir.of_checkpoint(self.resume)
            if found is not None:  # before reading it: a run still writing there is refused
                self.locks.append(lock_run_dir(found.root))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for lock in self.locks:
            lock.release()

    def restore(self, training: Training) -> TrainingState:
        """The state training starts from: step 0, or the checkpoint's.

        Raises:
            CheckpointError: the checkpoint cannot be read, or was trained with other task
                settings and ``allow_changes`` is off.
        """
        assert training.plan is not None  # built with data
        state = TrainingState(training.plan, last_checkpoint=self.resume)
        if self.resume is not None:
            state.step = training.restore(self.resume, self.notes, self.changes)
        if self.changes and not self.allow_changes:
            raise CheckpointError(_refuse_changes(self.resume, self.changes))
        return state

    def nothing_to_train(self, state: TrainingState, observer: TrainingObserver) -> FitResult:
        """The result of a resume at or past the last step: no file is changed."""
        assert self.resume is not None
        found = RunDir.of_checkpoint(self.resume)
        observer.message(f"nothing to train: {self.resume} is at step {state.step} of "
                         f"{state.plan.total_steps}; raise train.max_steps (or the epochs) to "
                         "train longer. No file was changed.")
        return FitResult(found.root if found else self.resume.parent, state.step, self.resume)

    def open(self, training: Training, registry: Components, ddp: distributed.Distributed,
             state: TrainingState, observer: TrainingObserver, warnings: list[str]
             ) -> JobContext:
        """Open the run directory (:meth:`_hold`); on rank 0, say where it is with the
        resume notes and ``warnings``, and open the records. Returns what the jobs of the run
        are built from.

        Raises:
            RunDirBusyError: another live process writes that run directory.
        """
        run, environment = self._hold(training, registry, ddp, state, observer)
        if not ddp.is_main:
            return JobContext(training, run, ddp, observer, environment, log=None)
        observer = LoggedObserver(observer, TrainLog(run.train_log))  # notices to train.log
        observer.message(f"resuming {run.root} from step {state.step} ({self.resume})"
                         if self.resume else f"run directory: {run.root}")
        for note in [*self.notes, *warnings]:
            observer.message(f"warning: {note}")
        log = _open_log(training, registry, run, observer)
        if self.changes:  # --allow-changes: the log says where the task changed
            log.write({"step": state.step, "resumed_with_changes": self.changes})
            observer.message("warning: resumed with other task settings: "
                             + _listed(self.changes))
        return JobContext(training, run, ddp, observer, environment, log=log)

    def _hold(self, training: Training, registry: Components, ddp: distributed.Distributed,
              state: TrainingState, observer: TrainingObserver) -> tuple[RunDir, dict[str, Any]]:
        """Name (rank 0: create) the run directory, hold its lock and write its record; on a
        resume, cut the metrics after the checkpoint (they will be written again) and remove
        what a killed process was writing. A resume from a checkpoint older than its run's
        newest continues in a new branch directory. Returns the directory and the
        environment record."""
        recipe, run_dir = training.recipe, self.run_dir
        if self.resume is not None and run_dir is None:
            found = RunDir.of_checkpoint(self.resume)  # a checkpoint outside a run: a new one
            run_dir = found.root if found is not None else None
            if ddp.is_main and found is not None:  # locked on entry: no writer to branch from
                run_dir = _branch_if_older(found, self.resume, state.step, observer)
        if ddp.is_main and run_dir is None:
            run_dir = create_run_dir(Path(recipe.run.output_dir),
                                     recipe.run.name or recipe.trainer.name)
        run = RunDir(ddp.share_path(run_dir))  # rank 0 created it; the others know its name
        _same_start_on_every_rank(ddp, state.step, self.resume)
        if not ddp.is_main:
            return run, {}
        if not any(lock.path.parent == run.root for lock in self.locks):
            for lock in self.locks:  # a branch leaves the run it came from free
                lock.release()
            self.locks.append(lock_run_dir(run.root))  # before anything there is written
        check_run_dir(run.root)  # no link inside it would take a write elsewhere
        if self.resume is None:  # a start: into a directory no run has a checkpoint in
            started_over = check_start_in(run.root)  # (--resume auto found one stopped early)
            if started_over is not None:
                self.notes.append(started_over)
        return run, _write_run_start(training, registry, run, state)

    @contextmanager
    def ending(self, training: Training, jobs: JobList, state: TrainingState,
               observer: TrainingObserver, ddp: distributed.Distributed) -> Iterator[None]:
        """Around the training loop: how the run ends.

        A normal end lets the jobs finish (the last checkpoint, the report) once the other
        processes are let go. A stop on request (Ctrl-C or SIGTERM, after the step under way)
        lets them finish too and raises TrainingInterrupted (a :class:`SignalInterrupted`,
        also a ``KeyboardInterrupt``: a program training in its own process, pytest for one,
        stops too); a second Ctrl-C in the middle of a step, or any failure, lets them
        salvage what was recorded (never the weights).
        Either way, the unusable image files the data replaced are said at the end.
        """
        try:
            yield
        except StopRequested:
            jobs.finish(state)
            raise SignalInterrupted(
                f"interrupted at step {state.step}; checkpoint saved to "
                f"{state.last_checkpoint}. Resume with: imtrans run RECIPE --resume "
                f"{state.last_checkpoint}") from None
        except KeyboardInterrupt:  # a second Ctrl-C, in the middle of a step: that step is lost
            jobs.salvage(state, observer)
            raise SignalInterrupted(_stopped_at_once(state)) from None
        except BaseException:
            jobs.salvage(state, observer)
            raise
        finally:
            observer.on_end()
            ddp.close()  # what follows involves no other rank
            _warn_skipped(training.data.skipped if training.data else [], observer)
        jobs.finish(state)  # the trackers' job closes them last, after the final records


def _same_start_on_every_rank(ddp: distributed.Distributed, step: int,
                              resume: Path | None) -> None:
    """Refuse a rank that starts at another step than rank 0: each found its checkpoint for
    itself (``--resume auto``, ``latest``, a run directory), and one that cannot see rank 0's
    files (another machine without the shared file system) would train another run."""
    if not ddp.enabled:
        return
    # Rank 0's step travels as a path: the one thing the ranks already share that way.
    first = int(ddp.share_path(Path(str(step))).name)
    if first != step:
        raise CheckpointError(
            f"rank {ddp.rank} starts at step {step} ({resume or 'no checkpoint'}) but rank 0 "
            f"at step {first}: every process must see the same run directory (a file system "
            "they share); resume them all from one checkpoint file")


def _write_run_start(training: Training, registry: Components, run: RunDir,
                     state: TrainingState) -> dict[str, Any]:
    """The run record, the folders, the metrics cut at the step resumed from, no temporaries."""
    recipe = training.recipe
    environment = write_run_record(run.root, recipe.resolved(), registry, training.device,
                                   data=_data_used(recipe))
    run.samples.mkdir(parents=True, exist_ok=True)
    MetricsLog(run.metrics).truncate_after(state.step)
    for folder in (run.root, run.samples, run.checkpoints):  # what a killed process was writing
        remove_temporaries(folder)
    return environment


def _data_used(recipe: Recipe) -> dict[str, str] | None:
    """What the run trains on when ``data.root`` is missing and the bundled sample of its
    dataset stands in (the folder choice the dataset was built with, made again: it only
    looks at the folders); None when it trains on ``data.root``."""
    root = recipe.data.kwargs.get("root")
    if root is None:
        return None
    resolved = resolve_root(root, recipe.data.catalog)
    if resolved.source != "sample":
        return None
    return {"source": "bundled sample", "root": str(root), "used": str(resolved.path),
            "note": f"data: {resolved.message}"}


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


def _open_log(training: Training, registry: Components, run: RunDir,
              observer: TrainingObserver) -> RunLog:
    """``metrics.jsonl`` and the recipe's logger backends, told the resolved recipe."""
    recipe = training.recipe
    log = RunLog(run.metrics, open_trackers(recipe, registry, run.root), observer)
    log.hyperparameters(recipe.resolved())
    return log


def _listed(changes: dict[str, list[Any]]) -> str:
    return ", ".join(f"{path} {was!r} -> {now!r}" for path, (was, now) in changes.items())


def _refuse_changes(resume: Path | None, changes: dict[str, list[Any]]) -> str:
    return (f"resuming {resume} with other task settings than it was trained with: "
            f"{_listed(changes)}. A resume continues the same run: set them back; or start a "
            "new run from its weights ([init] from); or pass --allow-changes to continue with "
            "them (recorded in metrics.jsonl)")


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
