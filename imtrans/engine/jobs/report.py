"""``report.html``: rewritten after each sample grid and evaluation, and when training ends. A
failure to write it is reported, never fatal to training."""

from __future__ import annotations

from imtrans.engine.jobs.base import Job
from imtrans.engine.observer import TrainingObserver
from imtrans.engine.state import TrainingState
from imtrans.errors import ImtransError
from imtrans.report import write_report
from imtrans.rundir import RunDir

__all__ = ["Report", "refresh_report"]


class Report(Job):
    """Rewrites the report when one of ``after`` (the sample and evaluation jobs) ran.

    Args:
        run_dir: The run directory the report describes.
        observer: Receives a warning when the report cannot be written.
        after: The jobs whose output the report shows.
    """

    def __init__(self, run_dir: RunDir, observer: TrainingObserver, after: list[Job]) -> None:
        self.run_dir, self.observer, self.after = run_dir, observer, after

    def due(self, state: TrainingState) -> bool:
        return any(job.due(state) for job in self.after)

    def run(self, state: TrainingState) -> None:
        refresh_report(self.run_dir, self.observer)

    def finish(self, state: TrainingState) -> None:
        refresh_report(self.run_dir, self.observer)


def refresh_report(run_dir: RunDir, observer: TrainingObserver) -> None:
    """Rewrite ``report.html``; a failure is a warning."""
    try:
        write_report(run_dir.root)
    except ImtransError as exc:
        observer.message(f"warning: report.html not updated: {exc}")
