"""Learning-rate schedules of the papers' code, applied per epoch.

The rate stays at its initial value for ``n_epochs`` epochs, then follows the policy:
``linear`` decays to zero over ``n_epochs_decay`` epochs (the papers' default), ``step``
multiplies by ``gamma`` every ``step_size`` epochs, ``cosine`` anneals to zero over the decay
epochs, ``plateau`` multiplies by ``gamma`` when the epoch's generator loss stops improving.

``timing = "official"`` (policy ``linear`` only) runs the linear decay one epoch ahead, as
the official pytorch-CycleGAN-and-pix2pix loop does: it steps its ``LambdaLR`` at the start of
each epoch, so epoch ``e`` (from 1) trains at ``1 - max(0, e + 1 - n_epochs) /
(n_epochs_decay + 1)`` and the last one at 0. The default, ``"imtrans"``, trains epoch ``e``
at ``1 - max(0, e - n_epochs) / (n_epochs_decay + 1)``: the same formula applied after each
epoch, which is what the official loop did until it moved the call.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from imtrans.recipe import ScheduleTable

__all__ = ["LRSchedule"]


class LRSchedule:
    """Sets the learning rate of every optimiser at the start of each epoch.

    Each parameter group follows the policy from its own initial rate (the one it has when the
    schedule is made), so a trainer can give an optimiser a rate of its own (see
    :meth:`imtrans.trainers.Trainer.optimizer`).

    Args:
        table: The recipe's ``[schedule]``.
        optimizers: The optimisers to adjust, as created (at their initial rates).

    Example:
        >>> import torch
        >>> from imtrans.recipe import ScheduleTable
        >>> gen = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
        >>> disc = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=4e-4)
        >>> schedule = LRSchedule(ScheduleTable(n_epochs=1, n_epochs_decay=1), [gen, disc])
        >>> schedule.begin_epoch(1)
        0.5
        >>> gen.param_groups[0]["lr"], disc.param_groups[0]["lr"]
        (0.0001, 0.0002)
    """

    #: Relative improvement below which an epoch counts as no progress (policy plateau).
    PLATEAU_THRESHOLD = 0.01
    #: Epochs without progress before the rate is cut (policy plateau).
    PLATEAU_PATIENCE = 5

    def __init__(self, table: ScheduleTable, optimizers: list[torch.optim.Optimizer]) -> None:
        self.table = table
        self.optimizers = optimizers
        # Read before a resume loads the optimisers' saved (scheduled) rates.
        self.initial_rates = [[float(group["lr"]) for group in optimizer.param_groups]
                              for optimizer in optimizers]
        self.plateau_factor = 1.0
        self.plateau_best = math.inf
        self.plateau_bad_epochs = 0

    def factor(self, epoch: int) -> float:
        """The multiplier of the initial rate during ``epoch`` (0-based)."""
        table = self.table
        past = epoch - table.n_epochs  # epochs into the decay phase; < 0 while constant
        if table.policy == "linear":
            # The official loop steps its scheduler before an epoch, not after: one ahead.
            ahead = 1 if table.timing == "official" else 0
            return 1.0 - max(0, past + 1 + ahead) / (table.n_epochs_decay + 1)
        if table.policy == "step":
            return table.gamma ** (max(0, past + table.step_size) // table.step_size)
        if table.policy == "cosine":
            if past < 0:
                return 1.0
            return 0.5 * (1 + math.cos(math.pi * min(past, table.n_epochs_decay)
                                       / max(1, table.n_epochs_decay)))
        return self.plateau_factor

    def begin_epoch(self, epoch: int) -> float:
        """Set every parameter group's rate for ``epoch`` (its initial rate x the factor);
        return the factor."""
        factor = self.factor(epoch)
        for optimizer, rates in zip(self.optimizers, self.initial_rates, strict=True):
            for group, initial in zip(optimizer.param_groups, rates, strict=True):
                group["lr"] = initial * factor
        return factor

    @property
    def lr(self) -> float | None:
        """The current rate of the first optimiser (the generators' in the built-in
        trainers): what the metrics record as ``lr``."""
        return float(self.optimizers[0].param_groups[0]["lr"]) if self.optimizers else None

    def end_epoch(self, epoch: int, generator_loss: float) -> None:
        """Record the epoch's mean generator loss (used by the plateau policy only)."""
        if self.table.policy != "plateau" or epoch < self.table.n_epochs:
            return
        if generator_loss < self.plateau_best * (1 - self.PLATEAU_THRESHOLD):
            self.plateau_best, self.plateau_bad_epochs = generator_loss, 0
            return
        self.plateau_bad_epochs += 1
        if self.plateau_bad_epochs > self.PLATEAU_PATIENCE:
            self.plateau_factor *= self.table.gamma
            self.plateau_bad_epochs = 0

    def state(self) -> dict[str, Any]:
        """What a checkpoint must hold to continue the schedule (JSON-serialisable)."""
        best = None if math.isinf(self.plateau_best) else self.plateau_best
        return {"plateau_factor": self.plateau_factor, "plateau_best": best,
                "plateau_bad_epochs": self.plateau_bad_epochs}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        self.plateau_factor = float(state["plateau_factor"])
        best = state["plateau_best"]
        self.plateau_best = math.inf if best is None else float(best)
        self.plateau_bad_epochs = int(state["plateau_bad_epochs"])
