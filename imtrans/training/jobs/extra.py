"""Jobs the caller of the fit loop adds to the standard ones: its own, and those of the floors
above training.

Training does not import evaluation or the report; :func:`imtrans.runner.fit` adds their jobs
through an :class:`ExtraJobs` of its own. Such jobs may need what exists only once the run
directory is open (the directory, the records, the observer that also writes ``train.log``),
so fit asks for them then, with a :class:`JobContext`, and places them among the standard jobs
(:func:`~imtrans.training.jobs.default_jobs`): the order of the jobs is the order of what a
step writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imtrans.core.distributed import Distributed
from imtrans.core.observer import TrainingObserver
from imtrans.runs.directory import RunDir
from imtrans.training.build import Training
from imtrans.training.jobs.base import Job
from imtrans.training.records import RunLog

__all__ = ["ExtraJobs", "JobContext"]


@dataclass(frozen=True)
class JobContext:
    """What the jobs of a run are built from, once its directory is open.

    Attributes:
        training: What is trained (trainer, schedule, recipe, sample batch, EMA).
        run_dir: Where the run writes.
        ddp: This process's place among the training processes.
        observer: Receives progress, records and notices (and writes ``train.log``).
        environment: The versions record every checkpoint holds.
        log: Where records go (``metrics.jsonl`` and the ``[log]`` trackers); None on the
            processes that do not write files.
    """

    training: Training
    run_dir: RunDir
    ddp: Distributed
    observer: TrainingObserver
    environment: dict[str, Any]
    log: RunLog | None


class ExtraJobs:
    """The jobs a caller adds to a run; this base class adds only ``jobs``, after all others.

    The fit loop calls :meth:`prepare` once the training is built, before anything is
    written, then, with the run directory open, places the jobs :meth:`after_checkpoint`
    and :meth:`before_stop` return among the standard ones, and ``jobs`` last. A floor
    above training subclasses it (:class:`imtrans.runner.jobs.EvaluationAndReport`).

    Args:
        jobs: The caller's own jobs (``jobs=`` of :func:`imtrans.train`), run after all others.
    """

    def __init__(self, jobs: Sequence[Job] = ()) -> None:
        self.jobs = list(jobs)

    @classmethod
    def of(cls, jobs: Sequence[Job] | ExtraJobs) -> ExtraJobs:
        """``jobs`` as extra jobs: a plain sequence runs after all the standard jobs."""
        return jobs if isinstance(jobs, ExtraJobs) else cls(jobs)

    def prepare(self, training: Training, ddp: Distributed) -> list[str]:
        """Build what may refuse the run (a missing test split), before anything is written;
        return the warnings to give at the start of training (default: none)."""
        return []

    def after_checkpoint(self, context: JobContext) -> list[Job]:
        """Jobs run right after the checkpoint job, which saves the step when one of them
        needs it (:attr:`Need.CHECKPOINT <imtrans.training.step_outcome.Need.CHECKPOINT>`)
        and publishes the file (default: none)."""
        return []

    def before_stop(self, context: JobContext) -> list[Job]:
        """Jobs run after every other standard job but the stop vote: they see all the step
        published (default: none)."""
        return []
