"""Loss terms that own trainable parameters: binding them to a generator, one Adam each, and
their place in checkpoints.

A feature loss such as PatchNCE carries a projection head that trains with the generator but
has its own optimiser (CUT's ``netF`` and ``optimizer_F``). Trainers keep such terms in a
:class:`TrainableTerms`: it creates the optimisers, zeroes and steps them with the generator's,
and names the terms for :meth:`Trainer.modules` and :meth:`Trainer.optimizers` (as
``loss_<key>``), so checkpoints save and restore them like networks.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from imtrans.losses.feature import GeneratorFeatureLoss
from imtrans.trainers.optim import OptimizerFactory
from imtrans.trainers.updates import clear_grads, optimizer_step

__all__ = ["TrainableTerms", "bind_feature_terms"]

#: Prefix of a trainable term's name among a trainer's modules and optimisers.
PREFIX = "loss_"


def bind_feature_terms(terms: Iterable[tuple[str, nn.Module]], generator: nn.Module, *,
                       suffix: str = "") -> list[tuple[str, GeneratorFeatureLoss]]:
    """Bind each feature loss term to ``generator``; return them keyed ``key + suffix``.

    With a ``suffix``, each term is bound as a fresh copy (made before binding, so it holds no
    parameters yet): a trainer with two generators (CycleGAN) gives each its own head, since
    their features differ.

    Args:
        terms: ``(recipe key, loss)`` pairs of one feature slot.
        generator: The generator the terms will be applied to.
        suffix: Appended to each key; a non-empty one binds copies.

    Raises:
        InvalidArgumentError: a loss cannot serve this generator (see ``bind``).
    """
    bound = []
    for key, loss in terms:
        term = copy.deepcopy(loss) if suffix else loss
        assert isinstance(term, GeneratorFeatureLoss)  # build_losses checked the slot
        term.bind(generator)
        bound.append((key + suffix, term))
    return bound


class TrainableTerms:
    """The loss terms of a trainer that have trainable parameters, with one Adam each.

    Args:
        terms: ``(name, loss)`` pairs; those without trainable parameters are left out.
        optimizers: Creates their optimisers (a head trains at the generator's learning rate).

    Example (in a trainer; :meth:`Trainer.trainable_terms` creates one):
        >>> trainable = self.trainable_terms(bound_terms)  # doctest: +SKIP
        >>> trainable.zero_grad(); total.backward(); trainable.step()  # doctest: +SKIP
    """

    def __init__(self, terms: Iterable[tuple[str, nn.Module]],
                 optimizers: OptimizerFactory) -> None:
        self.terms = {name: loss for name, loss in terms
                      if any(p.requires_grad for p in loss.parameters())}
        self.optims = {name: optimizers([loss]) for name, loss in self.terms.items()}

    def zero_grad(self) -> None:
        """Clear the terms' gradients (with the generator optimiser's ``zero_grad``)."""
        clear_grads(*self.optims.values())

    def step(self) -> None:
        """Update the terms' parameters (after the generator objective's backward).

        Across several training processes the gradients are averaged first, as DDP does for
        the networks, so every process keeps the same parameters.
        """
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            world = dist.get_world_size()
            for loss in self.terms.values():
                for param in loss.parameters():
                    if param.grad is not None:  # SUM then divide: gloo has no AVG
                        dist.all_reduce(param.grad)
                        param.grad.div_(world)
        for optimizer in self.optims.values():
            optimizer_step(optimizer)

    def modules(self) -> dict[str, nn.Module]:
        """The terms by checkpoint name (``loss_<name>``), for ``Trainer.modules``."""
        return {PREFIX + name: loss for name, loss in self.terms.items()}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Their optimisers by the same names, for ``Trainer.optimizers``."""
        return {PREFIX + name: opt for name, opt in self.optims.items()}
