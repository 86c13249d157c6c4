"""The logger backends' part of the loop: the recipe at the start, each sample grid as an
image, and closing at the end. (Scalars reach them with each metrics record, through
:class:`imtrans.training.run_log.RunLog`.)"""

from __future__ import annotations

from imtrans.runs.directory import RunDir
from imtrans.training.jobs.base import Job
from imtrans.training.run_log import RunLog
from imtrans.training.state import TrainingState

__all__ = ["Trackers"]


class Trackers(Job):
    """Sends sample grids to the trackers after the sample job wrote them; closes them.

    Args:
        log: The run's records and trackers.
        samples: The sample-grid job (None: the run writes no grids).
        run_dir: Where the grids are.
    """

    def __init__(self, log: RunLog, samples: Job | None, run_dir: RunDir) -> None:
        self.log, self.samples, self.run_dir = log, samples, run_dir

    def due(self, state: TrainingState) -> bool:
        return self.samples is not None and self.samples.due(state)

    def run(self, state: TrainingState) -> None:
        grid = self.run_dir.sample(state.step)
        if grid.is_file():
            self.log.image(state.step, "samples", grid)

    def finish(self, state: TrainingState) -> None:
        self.log.close()

    salvage = finish
