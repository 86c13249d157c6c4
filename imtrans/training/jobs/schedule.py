"""The epoch's end for the learning-rate schedule: the plateau policy reads the epoch's mean
generator loss (a read-back once per epoch; the other policies ignore it)."""

from __future__ import annotations

from imtrans.training.jobs.base import Job
from imtrans.training.schedules import LRSchedule
from imtrans.training.state import TrainingState

__all__ = ["EpochEnd"]


class EpochEnd(Job):
    """Hands the schedule the epoch's generator loss when an epoch ends."""

    def __init__(self, schedule: LRSchedule) -> None:
        self.schedule = schedule

    def due(self, state: TrainingState) -> bool:
        return state.epoch_end

    def run(self, state: TrainingState) -> None:
        self.schedule.end_epoch(state.epoch, state.epoch_losses.flush()["G"])
