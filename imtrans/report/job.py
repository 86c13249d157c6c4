"""``report.html`` as a job of the fit loop: written at the first metrics record, rewritten after
each sample grid and evaluation, and when training ends or stops.

The job reads what the jobs before it published in the step (``state.published``: a record,
a grid, scores) rather than holding them. While training runs, the page reloads itself; the
last rewrite turns that off. A failure to write it is reported, never fatal to training.
:func:`imtrans.runner.fit` adds the job to a run.
"""

from __future__ import annotations

from imtrans.core.observer import TrainingObserver
from imtrans.errors import ImtransError
from imtrans.report import write_report
from imtrans.runs.directory import RunDir
from imtrans.training.jobs.base import Job
from imtrans.training.state import TrainingState

__all__ = ["ReportJob", "refresh_report"]


class ReportJob(Job):
    """Rewrites the report when a sample grid or scores were published in the step, and once
    at the first published metrics record, so a just started run has a page.

    Args:
        run_dir: The run directory the report describes.
        observer: Receives a warning when the report cannot be written.
    """

    def __init__(self, run_dir: RunDir, observer: TrainingObserver) -> None:
        self.run_dir, self.observer = run_dir, observer
        self.written = False

    def due(self, state: TrainingState) -> bool:
        published = state.published
        return (published.samples is not None or published.eval is not None
                or (not self.written and published.record is not None))

    def run(self, state: TrainingState) -> None:
        refresh_report(self.run_dir, self.observer, live=not state.finished)
        self.written = True

    def finish(self, state: TrainingState) -> None:
        refresh_report(self.run_dir, self.observer, live=False)

    salvage = finish


def refresh_report(run_dir: RunDir, observer: TrainingObserver, *, live: bool = False) -> None:
    """Rewrite ``report.html`` (``live``: training goes on, the page reloads itself); a
    failure is a warning."""
    try:
        write_report(run_dir.root, live=live)
    except ImtransError as exc:
        observer.message(f"warning: report.html not updated: {exc}")
