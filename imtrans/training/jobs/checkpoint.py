"""Checkpoints and their retention: at the end, every ``train.checkpoint_every`` steps, at the
epoch ends retention keeps, and at other epoch ends once ``train.checkpoint_minutes`` have
passed (writing a large model after every short epoch would cost more time than it could save);
and in any step where a later job needs the weights as a file (evaluation scores a checkpoint).
What it saved is published (``state.published.checkpoint``). A model with NaN or inf weights is
never saved."""

from __future__ import annotations

from typing import Any

from imtrans.data.value_range import values_manifest
from imtrans.errors import NonFiniteError
from imtrans.recipe.schema import Recipe
from imtrans.runs.directory import RunDir
from imtrans.trainers.base import Trainer
from imtrans.trainers.ema import GeneratorEMA
from imtrans.training import checkpointing as training_checkpoint
from imtrans.training.jobs.base import Job
from imtrans.training.nonfinite import stop_message
from imtrans.training.schedules import LRSchedule
from imtrans.training.state import TrainingState
from imtrans.training.step_outcome import Need

__all__ = ["CheckpointJob", "dataset_values"]


def dataset_values(data: Any) -> dict[str, Any] | None:
    """The manifest entry ``values`` of the training data (a
    :class:`~imtrans.data.batches.TrainingData`): what its dataset says of each domain's
    value range and type, or None for a dataset that says nothing (plugin datasets)."""
    values = getattr(getattr(data, "dataset", None), "values", None)
    if not isinstance(values, dict) or not values:
        return None
    return values_manifest(values)


class CheckpointJob(Job):
    """Saves the whole training state, publishes it and applies retention.

    Args:
        recipe: The run's recipe (retention, timing; recorded in every checkpoint).
        trainer: What is saved (networks, optimisers, image pools).
        schedule: Its state is saved too.
        run_dir: The run directory (None on processes that do not write files).
        environment: The versions record, saved in every manifest.
        ema: The generators' moving average (``train.ema``), saved too.
        values: The dataset's value ranges and sample types per domain (manifest entry
            ``values``, see :mod:`imtrans.data.value_range`), for ``translate`` and ``eval``
            to map outputs back to native units.
    """

    needs = frozenset({Need.FINITE_CHECK})  # it keeps the weights

    def __init__(self, recipe: Recipe, trainer: Trainer, schedule: LRSchedule,
                 run_dir: RunDir | None, environment: dict[str, Any],
                 ema: GeneratorEMA | None = None,
                 values: dict[str, Any] | None = None) -> None:
        self.recipe, self.trainer, self.schedule = recipe, trainer, schedule
        self.run_dir, self.environment, self.ema = run_dir, environment, ema
        self.extra = {"values": values} if values else None

    def due(self, state: TrainingState) -> bool:
        """On the recipe's cadence (:meth:`scheduled`), or when a job due after it in the step
        needs the weights as a file."""
        return self.scheduled(state) or Need.CHECKPOINT in state.published.needs

    def scheduled(self, state: TrainingState) -> bool:
        """Whether the recipe's cadence saves this step: the last step, every
        ``train.checkpoint_every``, the epoch ends retention keeps, and other epoch ends once
        ``train.checkpoint_minutes`` have passed."""
        train, step = self.recipe.train, state.step
        if state.finished or (train.checkpoint_every and step % train.checkpoint_every == 0):
            return True
        if not state.epoch_end:
            return False
        epochs_done = step // state.plan.steps_per_epoch
        milestone = train.keep_every_epochs and epochs_done % train.keep_every_epochs == 0
        return bool(milestone) or state.now - state.saved_clock >= 60 * train.checkpoint_minutes

    def run(self, state: TrainingState) -> None:
        # Retention runs on the cadence: a checkpoint saved only for another job's sake
        # (the weights evaluation scores) is pruned with the next scheduled one. Asked
        # before saving, which restarts the clock of checkpoint_minutes.
        scheduled = self.scheduled(state)
        self.save(state)
        if self.run_dir is not None and scheduled:
            training_checkpoint.prune(self.run_dir.checkpoints, self.recipe.train)

    def finish(self, state: TrainingState) -> None:
        if not state.saved_now:
            self.save(state)

    def save(self, state: TrainingState) -> None:
        """Write the checkpoint of ``state.step`` (on the writing process), record it and
        publish it.

        Raises:
            NonFiniteError: a loss or weight became NaN or inf since the last check.
        """
        if self.run_dir is None:  # every rank holds the same weights; rank 0 writes them
            state.saved(None)
            return
        fault = state.finite.check(state.step, self.trainer.modules())
        if fault is not None:  # never save a broken model over the last good one
            raise NonFiniteError(stop_message(fault, state.last_checkpoint,
                                              self.recipe.train.on_nonfinite))
        state.saved(training_checkpoint.save(
            self.run_dir.checkpoints, self.trainer, self.schedule, state.step,
            state.plan.steps_per_epoch, self.recipe, self.environment, ema=self.ema,
            processes=state.plan.processes, extra=self.extra))
