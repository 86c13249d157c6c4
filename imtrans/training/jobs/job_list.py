"""The jobs of one run, in their order: what runs between two steps, and at the end."""

from __future__ import annotations

from collections.abc import Sequence

from imtrans.core.observer import TrainingObserver
from imtrans.training.jobs.base import Job
from imtrans.training.state import TrainingState
from imtrans.training.step_outcome import Need

__all__ = ["JobList"]


class JobList:
    """Runs the due jobs after each step, in order; finishes or salvages them all at the end.

    Args:
        jobs: The run's jobs, in the order they run (see
            :func:`~imtrans.training.jobs.default_jobs`).
    """

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = list(jobs)

    def after_step(self, state: TrainingState) -> None:
        """Publish what the jobs due in the step need, then run each due job in turn."""
        state.published.needs = self.needs(state)
        for job in self.jobs:
            if job.due(state):
                job.run(state)

    def needs(self, state: TrainingState) -> frozenset[Need]:
        """What the jobs due in this step need from the jobs before them (asked before any
        job of the step runs, when nothing is published yet)."""
        return frozenset(need for job in self.jobs if job.needs and job.due(state)
                         for need in job.needs)

    def finish(self, state: TrainingState) -> None:
        """Training ended normally or stopped on request: let every job complete its work
        (the last checkpoint, the partial record, the report)."""
        for job in self.jobs:
            job.finish(state)

    def salvage(self, state: TrainingState, observer: TrainingObserver) -> None:
        """After a failure, let every job keep what was recorded; a job failing here is
        reported, and the others still run (the failure that stopped training is what
        counts)."""
        for job in self.jobs:
            try:
                job.salvage(state)
            except Exception as exc:
                observer.message(f"warning: after the failure, {type(job).__name__} could "
                                 f"not save its part: {type(exc).__name__}: {exc}")
