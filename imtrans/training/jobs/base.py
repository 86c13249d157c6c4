"""The periodic-job contract: what runs after training steps, and when.

The fit loop makes one step, then, for each job in order, asks :meth:`Job.due` and, when it
is, calls :meth:`Job.run`. Both receive the one :class:`~imtrans.training.state.TrainingState`.
A job that writes keeps what it needs (the run directory, the trainer) from its constructor.
Jobs never hold each other: a job publishes what it did in the step on ``state.published``
(:class:`~imtrans.training.step_outcome.StepOutcome`: the record, the sample grid, the
checkpoint, the scores) and the jobs after it read that; what a job needs from the jobs
*before* it (the NaN check, a checkpoint of the step) it declares in :attr:`Job.needs`.
When training ends normally or stops on request (Ctrl-C or SIGTERM: after the step under way),
:meth:`Job.finish` lets each job complete its work (the checkpoint job saves the last step, the
record job writes the partial record, the report job rewrites the page). When it stops on a
failure (a NaN stop, bad data, a second Ctrl-C in the middle of a step), :meth:`Job.salvage`
keeps what was recorded (the partial metrics record, the report) and nothing else, so no
broken or half-updated weights are written.

Adding a periodic behaviour is one new job in the list :func:`imtrans.training.jobs.default_jobs`
returns (or passed to :func:`imtrans.train` with ``jobs=``).

Example:
    >>> class PrintEvery(Job):
    ...     def __init__(self, every: int) -> None:
    ...         self.every = every
    ...     def due(self, state: TrainingState) -> bool:
    ...         return state.step % self.every == 0
    ...     def run(self, state: TrainingState) -> None:
    ...         print("step", state.step)
"""

from __future__ import annotations

from typing import ClassVar

from imtrans.training.state import TrainingState
from imtrans.training.step_outcome import Need

__all__ = ["Job", "RolledBack"]


class Job:
    """One periodic concern of training (log, samples, checkpoint, evaluation...).

    ``due`` must be cheap and must not read values from the device: it is asked after every
    step. ``run`` may read (a log record reads the loss sums), write files, publish what it
    did on ``state.published``, or raise :class:`RolledBack` to make the loop restart the
    epoch from ``state.step``.
    """

    #: What the jobs before this one must do in a step where it is due: the NaN check when
    #: it reads values or keeps weights, a checkpoint when it needs the step's weights as a
    #: file. The loop asks ``due`` of each job with needs before any job of the step runs,
    #: so ``due`` must not depend on what earlier jobs publish in the step.
    needs: ClassVar[frozenset[Need]] = frozenset()

    def due(self, state: TrainingState) -> bool:
        """Whether the job runs after the step just made."""
        raise NotImplementedError

    def run(self, state: TrainingState) -> None:
        """Do the job's work for the current step."""
        raise NotImplementedError

    def finish(self, state: TrainingState) -> None:
        """Training ended normally or stopped on request after a complete step: complete
        what must be (default: nothing)."""

    def salvage(self, state: TrainingState) -> None:
        """Training stopped on a failure, possibly in the middle of a step: keep what was
        recorded, never the weights (default: nothing). An error here is reported and the
        original failure raised."""


class RolledBack(Exception):
    """Raised by a job that restored an earlier training state: the loop starts the epoch of
    ``state.step`` again, after the batches already done (or skipped)."""
