"""The training step the loop runs: the trainer's step and what follows it in every step.

:class:`TrainingStep` is what :func:`imtrans.engine.build.build_training` hands the fit loop
and ``imtrans bench`` as ``Training.step``: one call trains on one batch. It is the one place
the step is assembled, so a whole-step compile (``speed.compile = "step"``) and the
generators' moving average (``train.ema``) wrap the same thing for every trainer.
"""

from __future__ import annotations

from torch import Tensor

from imtrans.trainers.base import Trainer

__all__ = ["TrainingStep"]


class TrainingStep:
    """One training step on a batch: ``trainer.training_step``, then the step's bookkeeping.

    Args:
        trainer: The attached trainer.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Train on ``batch``; return the trainer's detached loss terms (on the device)."""
        return self.trainer.training_step(batch)
