"""The three calls of an optimiser update, written so that a compiled step can take them whole.

A trainer's step clears gradients, backwards a loss and steps optimisers. Run eagerly, these
are the usual ``zero_grad(set_to_none=True)``, ``loss.backward()`` and ``optimizer.step()``,
so the numbers of an eager run are exactly what they were. Inside a whole-step compile
(``speed.compile = "step"``, see :mod:`imtrans.training.step`), each becomes what the compiler can
capture in the same graph: torch's ``zero_grad`` and ``step`` are deliberately opaque to it, so
gradients are set to ``None`` directly, the backward goes into exactly the parameters of the
optimisers that step (the discriminators need no freezing: they get no gradient), and Adam runs
through torch's functional form with the learning rate as a tensor the engine keeps in step
with the schedule (a new rate is a new value, not a recompilation).

Example (in a trainer's step):
    >>> clear_grads(self.opt_disc)  # doctest: +SKIP
    >>> backward(loss_d, self.opt_disc)  # doctest: +SKIP
    >>> optimizer_step(self.opt_disc)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.optim.adam import adam as functional_adam

__all__ = ["VIEW", "CompiledView", "GroupView", "backward", "clear_grads", "optimizer_step"]

#: The attribute of an optimiser holding its :class:`CompiledView`, set by the engine before
#: each compiled step (see :class:`imtrans.training.step.TrainingStep`).
VIEW = "_imtrans_compiled_view"


@dataclass
class GroupView:
    """One parameter group as a compiled step reads it: its tensors and constant settings.

    Attributes:
        params: The group's parameters.
        state: Per parameter, Adam's state tensors by name (``exp_avg``, ``step``...).
        lr: The rate, as a tensor the engine refills when the schedule changes it.
        settings: The group's other Adam settings (constants of the graph).
        rate: The rate ``lr`` holds, read on the host without a device sync.
    """

    params: list[Tensor]
    state: list[dict[str, Tensor]]
    lr: Tensor
    settings: dict[str, Any]
    rate: float


@dataclass
class CompiledView:
    """An optimiser's groups, read on the host: inside the graph, reading ``param_groups``
    would guard on every value there, the rate included, and recompile when it moves."""

    groups: list[GroupView] = field(default_factory=list)


def clear_grads(*optimizers: torch.optim.Optimizer) -> None:
    """Set the gradients of the optimisers' parameters to ``None``."""
    for optimizer in optimizers:
        if not torch.compiler.is_compiling():
            optimizer.zero_grad(set_to_none=True)
            continue
        for group in _view(optimizer).groups:
            for param in group.params:
                param.grad = None


def backward(loss: Tensor, *optimizers: torch.optim.Optimizer) -> None:
    """Backward ``loss`` for the optimisers that step next.

    Eager: into every leaf that requires grad, as ever (frozen networks get nothing).
    Compiled: into the optimisers' parameters only, which is what freezing achieves eagerly.
    """
    if not torch.compiler.is_compiling():
        loss.backward()
        return
    loss.backward(inputs=[param for optimizer in optimizers
                          for group in _view(optimizer).groups for param in group.params])


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """Step ``optimizer`` (Adam, the trainers' optimiser): ``optimizer.step()`` eagerly, torch's
    functional Adam on the same state inside a compiled step."""
    if not torch.compiler.is_compiling():
        optimizer.step()
        return
    with torch.no_grad():
        for group in _view(optimizer).groups:
            _adam_group(group)


def _view(optimizer: torch.optim.Optimizer) -> CompiledView:
    view = optimizer.__dict__.get(VIEW)
    assert isinstance(view, CompiledView), "the engine makes the view before a compiled step"
    return view


def _adam_group(group: GroupView) -> None:
    """One parameter group's Adam update, through torch's functional ``adam``."""
    settings = group.settings
    used = [(p, s) for p, s in zip(group.params, group.state, strict=True) if p.grad is not None]
    beta1, beta2 = settings["betas"]
    functional_adam(
        [p for p, _ in used], [p.grad for p, _ in used],  # type: ignore[misc]
        [s["exp_avg"] for _, s in used], [s["exp_avg_sq"] for _, s in used],
        [s["max_exp_avg_sq"] for _, s in used] if settings["amsgrad"] else [],
        # foreach (fused across tensors by inductor) needs the device-side step counters of
        # capturable, which the engine sets on CUDA; on the CPU, one tensor at a time.
        [s["step"] for _, s in used], foreach=bool(settings["capturable"]),
        capturable=settings["capturable"],
        differentiable=False, fused=False,
        decoupled_weight_decay=settings.get("decoupled_weight_decay", False),
        amsgrad=settings["amsgrad"], beta1=beta1, beta2=beta2, lr=group.lr,
        weight_decay=settings["weight_decay"], eps=settings["eps"],
        maximize=settings["maximize"])
