"""Progress and the metrics record.

:class:`Progress` tells the observer of every step with the speed and ETA estimate, and every
``train.print_every_seconds`` gives it a plain progress line (``<run>/train.log``, and the
console when it is not a terminal). :class:`LogRecord` writes the metrics record: after the
first step, every ``train.log_every`` steps and at the last one, the mean of each loss term
since the previous record, the learning rate, images/s and the share of time spent waiting
for data. The loss sums are read from the device there, the one read-back of the interval.
The record is published on the step's outcome (``state.published.record``), where progress
takes the losses it shows and the report sees that a run has its first record.
"""

from __future__ import annotations

import time
from typing import Any

from imtrans.core.eta import ProgressStatus, Throughput
from imtrans.core.observer import TrainingObserver
from imtrans.training.jobs.base import Job
from imtrans.training.records import MetricsLog
from imtrans.training.schedules import LRSchedule
from imtrans.training.state import TrainingState
from imtrans.training.step_outcome import Need

__all__ = ["LogRecord", "Progress"]


class Progress(Job):
    """Tells the observer of every step, and prints a progress line now and then.

    Nothing is read from the device: the speed comes from the host clock, the losses from the
    latest metrics record (published by the record job, which runs before).

    Args:
        observer: Receives the step, the status and the lines.
        print_every_seconds: ``train.print_every_seconds``.
    """

    def __init__(self, observer: TrainingObserver, print_every_seconds: float) -> None:
        self.observer, self.print_every_seconds = observer, print_every_seconds
        self.clock: Throughput | None = None
        self.printed_at: float | None = None
        self.losses: dict[str, float] = {}  # the loss means of the latest record

    def _take_record(self, state: TrainingState) -> None:
        """Keep the losses of a record published in this step."""
        if state.published.record is not None:
            self.losses = state.published.record["losses"]

    def due(self, state: TrainingState) -> bool:
        return True

    def run(self, state: TrainingState) -> None:
        if self.clock is None:  # the first step of this process: time from the loop's start
            self.clock = Throughput(start_step=state.start_step, start_time=state.started)
        self._take_record(state)
        self.clock.mark(state.step, state.now)
        self.observer.on_step(state.step, state.epoch)
        status = self.status(state)
        self.observer.on_status(status)
        if (self.printed_at is None or state.finished
                or state.now - self.printed_at >= self.print_every_seconds):
            self.observer.on_progress_line(status.line())
            self.printed_at = state.now

    def finish(self, state: TrainingState) -> None:
        self._take_record(state)  # the partial record the record job just wrote, if any
        if self.clock is not None and self.printed_at != state.now:  # the last line
            self.observer.on_progress_line(self.status(state).line())

    def status(self, state: TrainingState) -> ProgressStatus:
        """The status after the current step."""
        assert self.clock is not None
        per_step = self.clock.seconds_per_step()
        plan = state.plan
        return ProgressStatus(
            step=state.step, total_steps=plan.total_steps, epoch=state.epoch + 1,
            epochs=plan.epochs, images_per_step=plan.global_batch,
            images_per_sec=plan.global_batch / per_step if per_step else None,
            eta_seconds=self.clock.eta_seconds(step=state.step, total=plan.total_steps),
            losses=self.losses)


class LogRecord(Job):
    """Writes one metrics record per logging interval (the first after the first step), and
    publishes it (``state.published.record``).

    Args:
        every: ``train.log_every``.
        log: The run's ``metrics.jsonl`` (None: another process writes it).
        schedule: Where the current learning rate is read.
        observer: Receives every record.
    """

    needs = frozenset({Need.FINITE_CHECK})  # it reads the loss sums

    def __init__(self, every: int, log: MetricsLog | None, schedule: LRSchedule,
                 observer: TrainingObserver) -> None:
        self.every, self.log, self.schedule, self.observer = every, log, schedule, observer
        self.written = False  # by this process: its first step gets a record of its own

    def due(self, state: TrainingState) -> bool:
        return not self.written or state.step % self.every == 0 or state.finished

    def run(self, state: TrainingState) -> None:
        self.write(state)

    def finish(self, state: TrainingState) -> None:
        if state.step > state.window_step:  # stopped between records: keep the partial one
            self.write(state, partial=True)

    salvage = finish

    def write(self, state: TrainingState, *, partial: bool = False) -> None:
        """Record the steps since the previous record."""
        elapsed = max(time.perf_counter() - state.window_clock, 1e-9)
        record: dict[str, Any] = {
            "step": state.step, "epoch": state.epoch + 1, "lr": self.schedule.lr,
            "images_per_sec": (state.step - state.window_step) * state.plan.global_batch
            / elapsed,
            "data_wait_fraction": min(state.data_wait / elapsed, 1.0),
            "losses": state.losses.flush(),  # the only read-back
        }
        if partial:
            record["partial"] = True  # fewer steps than log_every: the run stopped
        if self.log is not None:  # rank 0's losses, not the ranks' average
            self.log.write(record)
        self.observer.on_log(record)
        state.published.record = record
        self.written = True
        state.restart_window()
