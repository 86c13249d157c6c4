"""The metrics record: every ``train.log_every`` steps and at the last one, the mean of each loss
term since the previous record, the learning rate and images/s, to ``metrics.jsonl`` and to the
observer. The loss sums are read from the device here, the one read-back of the interval."""

from __future__ import annotations

import time

from imtrans.engine.jobs.base import Job
from imtrans.engine.loss_log import MetricsLog
from imtrans.engine.observer import TrainingObserver
from imtrans.engine.schedules import LRSchedule
from imtrans.engine.state import TrainingState

__all__ = ["LogRecord", "Progress"]


class Progress(Job):
    """Tells the observer of every step (a progress bar); nothing is read from the device."""

    def __init__(self, observer: TrainingObserver) -> None:
        self.observer = observer

    def due(self, state: TrainingState) -> bool:
        return True

    def run(self, state: TrainingState) -> None:
        self.observer.on_step(state.step, state.epoch)


class LogRecord(Job):
    """Writes one metrics record per logging interval.

    Args:
        every: ``train.log_every``.
        log: The run's ``metrics.jsonl`` (None: another process writes it).
        schedule: Where the current learning rate is read.
        observer: Receives every record.
    """

    def __init__(self, every: int, log: MetricsLog | None, schedule: LRSchedule,
                 observer: TrainingObserver) -> None:
        self.every, self.log, self.schedule, self.observer = every, log, schedule, observer

    def due(self, state: TrainingState) -> bool:
        return state.step % self.every == 0 or state.finished

    def run(self, state: TrainingState) -> None:
        elapsed = max(time.perf_counter() - state.window_clock, 1e-9)
        record = {"step": state.step, "epoch": state.epoch + 1, "lr": self.schedule.lr,
                  "images_per_sec": (state.step - state.window_step) * state.plan.global_batch
                  / elapsed,
                  "losses": state.losses.flush()}  # the only read-back
        if self.log is not None:  # rank 0's losses, not the ranks' average
            self.log.write(record)
        self.observer.on_log(record)
        state.restart_window()
