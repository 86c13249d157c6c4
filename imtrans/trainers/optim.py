"""The one way trainers create optimisers: a factory that carries the recipe's ``[optim]``
settings and the ``[speed]`` choice of Adam kernel, so no trainer reads either table itself.

Example:
    >>> from torch import nn
    >>> adam = OptimizerFactory(lr=2e-4, betas=(0.5, 0.999))
    >>> opt = adam([nn.Linear(2, 2)])
    >>> opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]
    (0.0002, (0.5, 0.999))
    >>> adam([nn.Linear(2, 2)], lr=4e-4).param_groups[0]["lr"]  # a rate of its own
    0.0004
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["OptimizerFactory"]


@dataclass(frozen=True)
class OptimizerFactory:
    """Creates Adam optimisers with the run's settings (the papers' optimiser).

    Attributes:
        lr: The initial learning rate (the schedule scales each optimiser's own initial rate).
        betas: Adam's betas.
        weight_decay: L2 penalty.
        fused: Use the fused kernel (one launch per step instead of several per tensor); the
            engine has checked that the training device has it.
    """

    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    fused: bool = False

    def __call__(self, modules: Iterable[nn.Module], *, lr: float | None = None
                 ) -> torch.optim.Adam:
        """One Adam over all ``modules``' parameters (the papers share one per role).

        Args:
            modules: The networks (or loss terms with parameters) it updates.
            lr: An initial rate of its own (default: the run's ``lr``).
        """
        params = [p for m in modules for p in m.parameters()]
        return torch.optim.Adam(params, lr=self.lr if lr is None else lr, betas=self.betas,
                                weight_decay=self.weight_decay, fused=self.fused or None)
