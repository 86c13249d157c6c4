"""``report.html``: written at the first metrics record, rewritten after each sample grid and
evaluation, and when training ends or stops. While training runs, the page reloads itself; the
last rewrite turns that off. A failure to write it is reported, never fatal to training."""

from __future__ import annotations

from collections.abc import Sequence

from imtrans.core.observer import TrainingObserver
from imtrans.errors import ImtransError
from imtrans.report import write_report
from imtrans.runs.directory import RunDir
from imtrans.training.jobs.base import Job
from imtrans.training.state import TrainingState

__all__ = ["Report", "refresh_report"]


class Report(Job):
    """Rewrites the report when one of ``after`` (the sample and evaluation jobs) ran, and
    once at the first of ``first`` (the metrics record), so a just started run has a page.

    Args:
        run_dir: The run directory the report describes.
        observer: Receives a warning when the report cannot be written.
        after: The jobs whose output the report shows.
        first: Jobs whose first run makes the first page.
    """

    def __init__(self, run_dir: RunDir, observer: TrainingObserver, after: Sequence[Job],
                 first: Sequence[Job] = ()) -> None:
        self.run_dir, self.observer, self.after, self.first = run_dir, observer, after, first
        self.written = False

    def due(self, state: TrainingState) -> bool:
        return (any(job.due(state) for job in self.after)
                or (not self.written and any(job.due(state) for job in self.first)))

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
