"""Build a recipe's components through the registries: the trainer, its networks, its loss
terms, and the optimiser factory.

Shared by :func:`imtrans.training.build.build_training` (training, ``imtrans bench``), by
``imtrans validate`` (on the meta device: shapes and parameter counts without allocating
weights) and by inference (a checkpoint's translator). The trainer is built first: it says
which networks it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from imtrans.core.components import Components
from imtrans.errors import ComponentError, InvalidArgumentError, RecipeError
from imtrans.losses.adversarial import AdversarialLoss
from imtrans.losses.feature import GeneratorFeatureLoss
from imtrans.recipe import OptimTable, Recipe
from imtrans.trainers.base import ADVERSARIAL_SLOT, DomainChannels, NetworkSpec, Trainer
from imtrans.trainers.loss_terms import LossTerms
from imtrans.trainers.optim import OptimizerFactory

__all__ = [
    "ComponentSummary",
    "build_losses",
    "build_networks",
    "build_trainer",
    "create_component",
    "loss_terms",
    "network_specs",
    "optimizer_factory",
    "summarize",
]


@dataclass(frozen=True)
class ComponentSummary:
    """One line of ``imtrans validate``: what fills a role and how big it is."""

    role: str
    kind: str
    name: str
    source: str
    parameters: int | None
    detail: str = ""


def build_trainer(recipe: Recipe, registry: Components) -> Trainer:
    """Build the ``[trainer]`` (its hyperparameters; networks are built separately)."""
    table = recipe.trainer
    trainer: Trainer = create_component(registry, "trainers", table.name, "trainer",
                                        table.kwargs)
    return trainer


def network_specs(trainer: Trainer, recipe: Recipe) -> dict[str, NetworkSpec]:
    """The networks ``trainer`` needs for the recipe's data channels.

    Raises:
        RecipeError: the trainer cannot work with those channel counts (naming ``[trainer]``).
    """
    try:
        return trainer.networks(DomainChannels(*recipe.data.channels()))
    except InvalidArgumentError as exc:
        raise RecipeError(f"[trainer]: {exc}") from None


def build_networks(recipe: Recipe, registry: Components, trainer: Trainer,
                   device: torch.device | str = "cpu") -> dict[str, nn.Module]:
    """Build every network ``trainer`` needs, by attribute name, on ``device``.

    On the ``meta`` device nothing is allocated, so full-size networks build instantly.
    """
    networks = {}
    with torch.device(device):
        for role, spec in network_specs(trainer, recipe).items():
            table = getattr(recipe, spec.section)
            kwargs = table.kwargs | spec.overrides
            networks[role] = create_component(registry, spec.kind, table.name, spec.section,
                                              kwargs)
    return networks


def optimizer_factory(optim: OptimTable, *, fused: bool = False) -> OptimizerFactory:
    """The optimiser factory of a recipe's ``[optim]`` and ``speed.fused_adam``."""
    return OptimizerFactory(lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay,
                            fused=fused)


def loss_terms(recipe: Recipe, losses: dict[str, nn.Module]) -> LossTerms:
    """The built ``losses`` with the slot each recipe term fills."""
    return LossTerms(losses, {key: term.on or key for key, term in recipe.losses.items()})


def build_losses(recipe: Recipe, registry: Components, trainer: Trainer
                 ) -> dict[str, nn.Module]:
    """Build every loss term by its recipe key, checking each fits the slot it fills.

    The adversarial slot takes an ``AdversarialLoss``, feature slots a
    ``GeneratorFeatureLoss``, and pair slots any other loss (one comparing two images).

    Raises:
        RecipeError: a term is of the wrong kind for its slot.
    """
    losses = {}
    for key, term in recipe.losses.items():
        loss = create_component(registry, "losses", term.name, f"losses.{key}", term.kwargs)
        slot = term.on or key
        if slot == ADVERSARIAL_SLOT:
            fits, wanted = isinstance(loss, AdversarialLoss), "an adversarial loss"
        elif slot in trainer.feature_slots:
            fits = isinstance(loss, GeneratorFeatureLoss)
            wanted = "a feature loss (a GeneratorFeatureLoss, such as patchnce)"
        else:
            fits = not isinstance(loss, AdversarialLoss | GeneratorFeatureLoss)
            wanted = "a loss comparing two images"
        if not fits:
            raise RecipeError(f"[losses.{key}]: slot {slot!r} takes {wanted}; "
                              f"{term.name!r} is not one")
        losses[key] = loss
    return losses


def summarize(recipe: Recipe, registry: Components, trainer: Trainer | None = None
              ) -> list[ComponentSummary]:
    """Build everything on the meta device and describe it, one line per component
    (``trainer``: the recipe's trainer when the caller built it already)."""
    trainer = trainer if trainer is not None else build_trainer(recipe, registry)
    rows = [_row("trainer", "trainers", recipe.trainer.name, registry, None)]
    rows.append(_row("data", "datasets", recipe.data.name, registry, None, _data_detail(recipe)))
    specs = network_specs(trainer, recipe)
    networks = build_networks(recipe, registry, trainer, "meta")
    for role, net in networks.items():
        spec = specs[role]
        count = sum(p.numel() for p in net.parameters())
        rows.append(_row(role, spec.kind, getattr(recipe, spec.section).name, registry, count))
    translator = networks.get(trainer.translators.get("AtoB", ""))
    for key, loss in build_losses(recipe, registry, trainer).items():
        if isinstance(loss, GeneratorFeatureLoss) and translator is not None:
            # Bound to the (meta) translator as training would: sizes its parameters and
            # refuses a generator it cannot serve before anything runs.
            _bind(loss, translator, key)
        term = recipe.losses[key]
        weight = getattr(loss, "weight", None)
        detail = f"weight {weight:g}" if isinstance(weight, float | int) else ""
        if term.on and term.on != key:
            detail += f", on {term.on}"
        held = sum(p.numel() for p in loss.parameters())
        rows.append(_row(f"losses.{key}", "losses", term.name, registry, held or None, detail))
    return rows


def _bind(loss: GeneratorFeatureLoss, generator: nn.Module, key: str) -> None:
    try:
        with torch.device("meta"):
            loss.bind(generator)
    except ComponentError as exc:
        raise RecipeError(f"[losses.{key}]: {exc}") from None


def _row(role: str, kind: str, name: str, registry: Components, params: int | None,
         detail: str = "") -> ComponentSummary:
    source = registry.registry(kind).get(name).source
    return ComponentSummary(role, kind, name, source, params, detail)


def _data_detail(recipe: Recipe) -> str:
    root = recipe.data.kwargs.get("root")
    return f"root {root}, batch {recipe.data.batch_size}" if root else ""


def create_component(registry: Components, kind: str, name: str, where: str,
                     kwargs: dict[str, Any]) -> Any:
    """Build one component; an argument problem becomes a RecipeError naming ``[where]``.

    The builder's own refusal of a value (an ``InvalidArgumentError``, or the ``ValueError``
    or ``TypeError`` a plugin raises) is said with the table and the component it came from:
    ``[losses.cycle] huber: delta must be > 0, got -1.0``; ``--debug`` shows its traceback.
    """
    try:
        return registry.registry(kind).create(name, where=f"[{where}]", **kwargs)
    except ComponentError as exc:
        message = str(exc)  # a check of the arguments against the signature names the table
        raise RecipeError(message if message.startswith(f"[{where}]")
                          else f"[{where}] {name}: {message}") from exc
    except (ValueError, TypeError) as exc:
        raise RecipeError(f"[{where}] {name}: {exc}") from exc
