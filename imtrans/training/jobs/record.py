"""Progress and the metrics record.

:class:`Progress` tells the observer of every step with the speed and ETA estimate, and every
``train.print_every_seconds`` gives it a plain progress line (``<run>/train.log``, and the
console when it is not a terminal) with the mean losses since the previous line
(:class:`LineLosses`, read from the record's running sums once per line, without resetting
them). :class:`LogRecord` writes the metrics record: after the first step, every
``train.log_every`` steps and at the last one, the mean of each loss term since the previous
record, the learning rate, images/s and the share of time spent waiting for data. The loss
sums are read from the device there, the one read-back of the interval besides the lines.
The record is published on the step's outcome (``state.published.record``), where the
report sees that a run has its first record.
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

__all__ = ["LineLosses", "LogRecord", "Progress"]


class Progress(Job):
    """Tells the observer of every step, and prints a progress line now and then.

    The speed comes from the host clock. The losses a line shows are the mean of each term
    over the steps since the previous line (:class:`LineLosses`): read from the loss sums
    the metrics record keeps on the device, once per line (every
    ``train.print_every_seconds``), never per step; the live bar shows the same figures.

    Args:
        observer: Receives the step, the status and the lines.
        print_every_seconds: ``train.print_every_seconds``.
    """

    def __init__(self, observer: TrainingObserver, print_every_seconds: float) -> None:
        self.observer, self.print_every_seconds = observer, print_every_seconds
        self.clock: Throughput | None = None
        self.printed_at: float | None = None
        self.line_losses = LineLosses()
        self.losses: dict[str, float] = {}  # what the latest line showed

    def due(self, state: TrainingState) -> bool:
        return True

    def run(self, state: TrainingState) -> None:
        if self.clock is None:  # the first step of this process: time from the loop's start
            self.clock = Throughput(start_step=state.start_step, start_time=state.started)
        self.clock.mark(state.step, state.now)
        self.observer.on_step(state.step, state.epoch)
        line_due = (self.printed_at is None or state.finished
                    or state.now - self.printed_at >= self.print_every_seconds)
        if line_due:  # the one read-back of progress: once per line
            self.losses = self.line_losses.read(state)
        status = self.status(state)
        self.observer.on_status(status)
        if line_due:
            self.observer.on_progress_line(status.line())
            self.printed_at = state.now

    def finish(self, state: TrainingState) -> None:
        if self.clock is not None and self.printed_at != state.now:  # the last line
            self.losses = self.line_losses.read(state)
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


class LineLosses:
    """The loss means of a progress line: over the steps since the previous line.

    The record job sums each step's losses on the device (``state.losses``) and empties the
    sums when it writes a record. A line reads the sums as they are (:meth:`LossMeter.peek
    <imtrans.training.records.LossMeter.peek>`, one transfer) and takes the difference from
    the sums the previous line read; when one record emptied them in between, the rest of
    that record's sums count too (:attr:`LossMeter.flushed
    <imtrans.training.records.LossMeter.flushed>`); after several records, the line covers
    the steps since the latest. The metrics record is left exactly as it is without lines.
    """

    def __init__(self) -> None:
        self.window = 0  # the sums' window (LossMeter.windows) at the previous line
        self.sums: dict[str, float] = {}  # ... and the sums read then
        self.count = 0  # ... over this many steps
        self.means: dict[str, float] = {}

    def read(self, state: TrainingState) -> dict[str, float]:
        """The means since the previous read (the previous ones when no step was made)."""
        meter = state.losses
        now_sums, now_count = sums, count = meter.peek()
        if meter.windows == self.window:  # no record since the previous line
            base, base_count = self.sums, self.count
        elif meter.windows == self.window + 1:  # one: the rest of its window counts too
            flushed, flushed_count = meter.flushed
            sums = {key: value + sums.get(key, 0.0) for key, value in flushed.items()}
            count += flushed_count
            base, base_count = self.sums, self.count
        elif count:  # several: since the latest
            base, base_count = {}, 0
        else:  # ... in the step of the line itself: that record's window
            (sums, count), (base, base_count) = meter.flushed, ({}, 0)
        if count > base_count:
            steps = count - base_count
            self.means = {key: (value - base.get(key, 0.0)) / steps
                          for key, value in sums.items()}
        self.window, self.sums, self.count = meter.windows, now_sums, now_count
        return self.means


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
