"""Stopping on request: Ctrl-C or SIGTERM asks the loop to stop after the step under way, with a
checkpoint of it. Several processes must agree on that step (a signal reaches them at
different steps), so they vote; one process only reads its own flag."""

from __future__ import annotations

from imtrans.core.distributed import Distributed
from imtrans.core.stop_signals import StopRequested
from imtrans.training.jobs.base import Job
from imtrans.training.state import TrainingState

__all__ = ["StopRequested", "StopVote"]


class StopVote(Job):
    """Raises :class:`StopRequested` once a stop was asked for (by every rank's agreement)."""

    def __init__(self, ddp: Distributed) -> None:
        self.ddp = ddp

    def due(self, state: TrainingState) -> bool:
        return True

    def run(self, state: TrainingState) -> None:
        if self.ddp.should_stop():
            raise StopRequested
