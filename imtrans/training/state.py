"""The state the training loop and its periodic jobs share: where the run is, what it has saved,
and the loss sums waiting to be read.

The loop advances it once per step (:meth:`TrainingState.advance`), which starts the step's
:class:`~imtrans.training.step_outcome.StepOutcome` (``published``); jobs read the state to
decide whether they are due, and publish there what they did (the checkpoint job what it
saved, the record job its record) for the jobs after them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from torch import Tensor

from imtrans.data.sampler import batches_per_epoch
from imtrans.recipe.schema import Recipe
from imtrans.training.nonfinite import NonFiniteWatch
from imtrans.training.records import LossMeter
from imtrans.training.step_outcome import StepOutcome

__all__ = ["Plan", "TrainingState"]

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """How long a run is, in steps (the same on every process).

    Attributes:
        steps_per_epoch: Steps of one pass over the data at the global batch size.
        total_steps: Steps of the whole run (all epochs, or ``train.max_steps``).
        epochs: Epochs of the schedule (constant plus decay).
        global_batch: Images per step over all processes (``data.batch_size`` x processes).
        processes: How many processes train together (checkpoints record it: a step's place
            in the data and the schedule depends on the global batch).
    """

    steps_per_epoch: int
    total_steps: int
    epochs: int
    global_batch: int
    processes: int = 1

    @classmethod
    def of(cls, recipe: Recipe, dataset_length: int, world_size: int = 1) -> Plan:
        """The plan of ``recipe`` over a dataset of ``dataset_length`` items."""
        global_batch = recipe.data.batch_size * world_size
        steps_per_epoch = batches_per_epoch(dataset_length, global_batch)
        epochs = recipe.schedule.n_epochs + recipe.schedule.n_epochs_decay
        total = epochs * steps_per_epoch
        if recipe.train.max_steps is not None:
            total = min(total, recipe.train.max_steps)
        return cls(steps_per_epoch, total, epochs, global_batch, world_size)


@dataclass
class TrainingState:
    """Where a run is.

    Attributes:
        plan: Steps per epoch and in total.
        step: Optimiser steps done (global: the same on every process).
        epoch: The current epoch, from 0 (``step // steps_per_epoch`` during it).
        last_checkpoint: The newest checkpoint written (or resumed from), if any.
        saved_clock: ``time.monotonic()`` when it was written (or training started).
        now: ``time.monotonic()`` at the end of the current step: every job due this step
            decides on the same clock.
        losses: Loss sums since the last log record, on the device.
        epoch_losses: The generator loss summed over the current epoch (plateau schedule).
        finite: Per-step finiteness flags, read at checks.
        step_losses: The loss terms of the step just made (device tensors).
        window_clock: ``time.perf_counter()`` when the current logging window began.
        window_step: The step it began at (images/s covers the steps since).
        data_wait: Seconds spent waiting for batches since the window began.
        started: ``time.monotonic()`` when this process's training loop began.
        start_step: The step it began at (0, or the resumed step).
        published: What the jobs did in the current step (see
            :class:`~imtrans.training.step_outcome.StepOutcome`).
    """

    plan: Plan
    step: int = 0
    epoch: int = 0
    last_checkpoint: Path | None = None
    saved_clock: float = field(default_factory=time.monotonic)
    now: float = field(default_factory=time.monotonic)
    losses: LossMeter = field(default_factory=LossMeter)
    epoch_losses: LossMeter = field(default_factory=LossMeter)
    finite: NonFiniteWatch = field(default_factory=NonFiniteWatch)
    step_losses: dict[str, Tensor] = field(default_factory=dict)
    window_clock: float = field(default_factory=time.perf_counter)
    window_step: int = 0
    data_wait: float = 0.0
    started: float = field(default_factory=time.monotonic)
    start_step: int = 0
    published: StepOutcome = field(default_factory=StepOutcome)

    def start(self) -> None:
        """The training loop begins now (the clock of speed and ETA)."""
        self.started, self.start_step = time.monotonic(), self.step
        self.restart_window()

    def timed(self, batches: Iterable[T]) -> Iterator[T]:
        """``batches``, adding the time spent waiting for each to :attr:`data_wait` (host
        time only: no sync)."""
        iterator = iter(batches)
        while True:
            asked = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.data_wait += time.perf_counter() - asked
            yield batch

    def begin_epoch(self) -> int:
        """Enter the epoch ``step`` falls in; return the batches of it already done (resume)."""
        self.epoch = self.step // self.plan.steps_per_epoch
        return self.step % self.plan.steps_per_epoch

    def advance(self, losses: dict[str, Tensor]) -> None:
        """Count one step and add its losses to the sums (device work only, no read-back);
        the jobs have published nothing of it yet."""
        self.losses.add(losses)
        self.epoch_losses.add({"G": losses["G"]})
        self.step += 1
        self.finite.add(self.step, losses)
        self.step_losses = losses
        self.now = time.monotonic()
        self.published = StepOutcome()

    @property
    def finished(self) -> bool:
        """Whether the run has made all its steps."""
        return self.step >= self.plan.total_steps

    @property
    def epoch_end(self) -> bool:
        """Whether the step just made ended an epoch."""
        return self.step % self.plan.steps_per_epoch == 0

    @property
    def saved_now(self) -> bool:
        """Whether a checkpoint of the current step exists (the checkpoint job published it)."""
        return self.published.saved

    def saved(self, checkpoint: Path | None) -> None:
        """Record and publish a checkpoint of the current step (None: another process writes
        them)."""
        self.last_checkpoint, self.saved_clock = checkpoint, time.monotonic()
        self.published.saved, self.published.checkpoint = True, checkpoint

    def restart_window(self) -> None:
        """Start a logging window at the current step (images/s counts from here)."""
        self.window_clock, self.window_step = time.perf_counter(), self.step
        self.data_wait = 0.0

    def rolled_back(self, to_step: int) -> None:
        """Continue from ``to_step`` after a rollback: the loss sums (which hold the broken
        steps) are dropped, and nothing is published of that step (it has no checkpoint)."""
        self.losses.flush()
        self.epoch_losses.flush()
        self.step, self.published = to_step, StepOutcome()
        self.restart_window()
