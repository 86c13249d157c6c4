"""The logger backends' part of the loop: each sample grid as an image (the one the sample job
published in the step), and closing at the end. (The recipe reaches them at the start, and
scalars with each metrics record, through :class:`imtrans.training.records.RunLog`.)"""

from __future__ import annotations

from imtrans.training.jobs.base import Job
from imtrans.training.records import RunLog
from imtrans.training.state import TrainingState

__all__ = ["Trackers"]


class Trackers(Job):
    """Sends the sample grid published in the step to the trackers; closes them at the end.

    Args:
        log: The run's records and trackers.
    """

    def __init__(self, log: RunLog) -> None:
        self.log = log

    def due(self, state: TrainingState) -> bool:
        return state.published.samples is not None

    def run(self, state: TrainingState) -> None:
        grid = state.published.samples
        if grid is not None and grid.is_file():
            self.log.image(state.step, "samples", grid)

    def finish(self, state: TrainingState) -> None:
        self.log.close()

    salvage = finish
