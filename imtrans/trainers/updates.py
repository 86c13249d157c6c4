"""A network group's update, written so that a compiled step can take it whole.

A trainer's step updates its networks group by group (pix2pix: the discriminator, then the
generator): :func:`update` freezes the networks that must get no gradient from the group's loss,
clears the group's gradients, computes the loss, backwards it and steps the group's optimisers,
so a step writes one line per group:

    >>> loss_d = update(self.opt_disc, loss=lambda: self.d_loss(a, b, fake))  # doctest: +SKIP
    >>> total, terms = update(self.opt_gen, self.heads, frozen=[self.disc],  # doctest: +SKIP
    ...                       loss=lambda: self.g_terms(a, b, fake))

It is made of three calls a trainer may also use on their own: :func:`clear_grads`,
:func:`backward` and :func:`optimizer_step`. Run eagerly, these are the usual
``zero_grad(set_to_none=True)``, ``loss.backward()`` and ``optimizer.step()``, so the numbers of
an eager run are exactly what they were. Inside a whole-step compile (``speed.compile =
"step"``, see :mod:`imtrans.training.step`), each becomes what the compiler can capture in the
same graph: torch's ``zero_grad`` and ``step`` are deliberately opaque to it, so gradients are
set to ``None`` directly, the backward goes into exactly the parameters of the optimisers that
step (the frozen networks need no freezing there: they get no gradient), and Adam runs through
torch's functional form with the learning rate as a tensor the engine keeps in step with the
schedule (a new rate is a new value, not a recompilation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor, nn
from torch.optim.adam import adam as functional_adam

__all__ = ["VIEW", "CompiledView", "GroupView", "StepGroup", "backward", "clear_grads",
           "optimizer_step", "update"]

#: What :func:`update` returns: what its ``loss`` returned, a tensor or a tuple led by one.
LossT = TypeVar("LossT", bound="Tensor | tuple[Any, ...]")

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


class StepGroup(Protocol):
    """What :func:`update` steps beside optimisers: a set of them with their own clearing and
    stepping (:class:`~imtrans.trainers.TrainableTerms`, which averages its gradients across
    processes before it steps)."""

    def zero_grad(self) -> None:
        """Clear the gradients of its parameters."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Its optimisers, which the backward goes into."""

    def step(self) -> None:
        """Step its optimisers."""


def update(*steps: torch.optim.Optimizer | StepGroup, loss: Callable[[], LossT],
           frozen: Iterable[nn.Module] = ()) -> LossT:
    """Update one group of networks on ``loss`` and return what ``loss`` returned.

    In order: freeze ``frozen`` (no gradient reaches them), clear the gradients of ``steps``,
    call ``loss()``, backward the loss into ``steps``, step each of ``steps``; then give the
    frozen networks back the ``requires_grad`` they had. Eagerly these are
    ``requires_grad_(False)``, ``zero_grad(set_to_none=True)``, ``backward()`` and ``step()``;
    inside a whole-step compile, what the compiler can capture (see the module doc).

    Args:
        steps: The optimisers of the group, in the order they step, and any
            :class:`StepGroup` among them: the trainer's
            :class:`~imtrans.trainers.TrainableTerms` (heads of loss terms, stepped with the
            generator) are cleared, backwarded into and stepped as they say.
        loss: Computes the group's loss: called once the networks are frozen (so their
            forwards record no graph for them). It returns the tensor to backward, or a tuple
            led by it (the rest, such as the terms to log, is passed back as it is).
        frozen: Networks the loss runs through that must not learn from it (the
            discriminators while the generators step).

    Example:
        >>> net, critic = nn.Linear(2, 1), nn.Linear(1, 1)
        >>> opt = torch.optim.Adam(net.parameters())
        >>> value = update(opt, loss=lambda: critic(net(torch.ones(1, 2))).sum(), frozen=[critic])
        >>> critic.weight.grad is None and critic.weight.requires_grad
        True
    """
    if torch.compiler.is_compiling():  # the backward names its parameters: nothing to freeze
        return _update(steps, loss)
    flags = [(param, param.requires_grad) for module in frozen for param in module.parameters()]
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        return _update(steps, loss)
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


def _update(steps: tuple[torch.optim.Optimizer | StepGroup, ...],
            loss: Callable[[], LossT]) -> LossT:
    optimizers: list[torch.optim.Optimizer] = []
    for step in steps:
        if isinstance(step, torch.optim.Optimizer):
            clear_grads(step)
            optimizers.append(step)
        else:
            step.zero_grad()
            optimizers.extend(step.optimizers().values())
    value = loss()
    backward(value if isinstance(value, Tensor) else value[0], *optimizers)
    for step in steps:
        if isinstance(step, torch.optim.Optimizer):
            optimizer_step(step)
        else:
            step.step()
    return value


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
