"""The stop vote of several processes: a signal reaches the ranks at different steps, so they
agree on one step to stop at (rank 0 then saves); one process needs no vote."""

from __future__ import annotations

from imtrans.engine.distributed import Distributed
from imtrans.engine.jobs.base import Job
from imtrans.engine.state import TrainingState

__all__ = ["StopVote"]


class StopVote(Job):
    """Raises ``KeyboardInterrupt`` (save, then stop) once every rank has agreed to stop."""

    def __init__(self, ddp: Distributed) -> None:
        self.ddp = ddp

    def due(self, state: TrainingState) -> bool:
        return self.ddp.enabled

    def run(self, state: TrainingState) -> None:
        if self.ddp.should_stop():
            raise KeyboardInterrupt
