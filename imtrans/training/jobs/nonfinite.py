"""The NaN/inf watch: wherever training reads values anyway (a log record, a checkpoint, an
evaluation), first read the step flags gathered since the last check and test the weights.
On a fault, stop (``train.on_nonfinite = "stop"``, the default) or roll back: reload the last
checkpoint and go on after the batch that broke, up to ``train.max_rollbacks`` times.

The check runs first among a step's jobs, in the steps where a job due declares
:attr:`Need.FINITE_CHECK <imtrans.training.step_outcome.Need.FINITE_CHECK>` (the record,
the checkpoint and evaluation jobs do): it knows them by what they need, not by holding them."""

from __future__ import annotations

from collections.abc import Callable

from imtrans.core.observer import TrainingObserver
from imtrans.errors import NonFiniteError
from imtrans.recipe.schema import TrainTable
from imtrans.trainers.base import Trainer
from imtrans.training.jobs.base import Job, RolledBack
from imtrans.training.nonfinite import NonFinite, stop_message
from imtrans.training.records import MetricsLog
from imtrans.training.state import TrainingState
from imtrans.training.step_outcome import Need

__all__ = ["NonFiniteCheck"]


class NonFiniteCheck(Job):
    """Checks losses and weights before the jobs that read or keep them.

    Args:
        train: The recipe's ``[train]`` (the policy and the rollback limit).
        trainer: Whose weights are checked.
        restore: Loads a checkpoint into the trainer and schedule; returns its step.
        log: Where a rollback is recorded (None on processes that do not write files).
        observer: Receives the rollback notice.
        can_roll_back: False with several processes (a rollback there stops instead).
    """

    def __init__(self, train: TrainTable, trainer: Trainer, restore: Callable[..., int],
                 log: MetricsLog | None, observer: TrainingObserver, *,
                 can_roll_back: bool = True) -> None:
        self.train, self.trainer, self.restore = train, trainer, restore
        self.log, self.observer, self.can_roll_back = log, observer, can_roll_back
        self.rollbacks = 0  # made by this process

    def due(self, state: TrainingState) -> bool:
        return Need.FINITE_CHECK in state.published.needs

    def run(self, state: TrainingState) -> None:
        fault = state.finite.check(state.step, self.trainer.modules())
        if fault is None:
            return
        last = state.last_checkpoint
        if (self.train.on_nonfinite == "stop" or not self.can_roll_back or last is None
                or self.rollbacks >= self.train.max_rollbacks):
            raise NonFiniteError(stop_message(fault, last, self.train.on_nonfinite))
        self.rollbacks += 1
        restored = self.restore(last)
        self._record(fault, restored, state)
        self.observer.message(
            f"{fault.describe()}: rolled back to {last.name} (step {restored}) and skipped the "
            f"batches up to step {fault.step} (rollback {self.rollbacks} of "
            f"{self.train.max_rollbacks})")
        # Go on from the step that broke: its batch and the ones before it since the
        # checkpoint are skipped (replaying them would break again).
        state.rolled_back(fault.step)
        raise RolledBack

    def _record(self, fault: NonFinite, restored: int, state: TrainingState) -> None:
        if self.log is None:
            return
        self.log.write({"step": fault.step,
                        "epoch": -(-fault.step // state.plan.steps_per_epoch),
                        "rollback": {"to_step": restored, "terms": fault.terms,
                                     "networks": fault.networks}})
