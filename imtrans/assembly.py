"""Build a recipe's components through the registries.

Shared by ``imtrans validate`` (on the meta device: shapes and parameter counts without
allocating weights) and by training (on the real device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from imtrans.errors import ComponentError, RecipeError
from imtrans.losses.adversarial import AdversarialLoss
from imtrans.losses.feature import GeneratorFeatureLoss
from imtrans.plugins import Components
from imtrans.recipe import Recipe

if TYPE_CHECKING:
    from imtrans.trainers.base import Trainer

__all__ = [
    "ComponentSummary",
    "build_losses",
    "build_networks",
    "build_trainer",
    "create_component",
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
    trainer = recipe.trainer
    return create_component(registry, "trainers", trainer.name, "trainer", trainer.kwargs)


def build_networks(
    recipe: Recipe, registry: Components, device: torch.device | str = "cpu"
) -> dict[str, nn.Module]:
    """Build every network the recipe's trainer needs, by attribute name, on ``device``.

    On the ``meta`` device nothing is allocated, so full-size networks build instantly.
    """
    trainer_cls = registry.trainers.get(recipe.trainer.name).builder
    networks = {}
    with torch.device(device):
        for role, spec in trainer_cls.networks(recipe).items():
            table = getattr(recipe, spec.section)
            kwargs = table.kwargs | spec.overrides
            networks[role] = create_component(registry, spec.kind, table.name, spec.section,
                                              kwargs)
    return networks


def build_losses(recipe: Recipe, registry: Components) -> dict[str, nn.Module]:
    """Build every loss term by its recipe key, checking each fits the slot it fills.

    The adversarial slot takes an ``AdversarialLoss``, feature slots a
    ``GeneratorFeatureLoss``, and pair slots any other loss (one comparing two images).

    Raises:
        RecipeError: a term is of the wrong kind for its slot.
    """
    trainer_cls = registry.trainers.get(recipe.trainer.name).builder
    losses = {}
    for key, term in recipe.losses.items():
        loss = create_component(registry, "losses", term.name, f"losses.{key}", term.kwargs)
        slot = term.on or key
        if slot == trainer_cls.adversarial_slot:
            fits, wanted = isinstance(loss, AdversarialLoss), "an adversarial loss"
        elif slot in trainer_cls.feature_slots:
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


def summarize(recipe: Recipe, registry: Components) -> list[ComponentSummary]:
    """Build everything on the meta device and describe it, one line per component."""
    build_trainer(recipe, registry)
    rows = [_row("trainer", "trainers", recipe.trainer.name, registry, None)]
    rows.append(_row("data", "datasets", recipe.data.name, registry, None, _data_detail(recipe)))
    trainer_cls = registry.trainers.get(recipe.trainer.name).builder
    specs = trainer_cls.networks(recipe)
    networks = build_networks(recipe, registry, "meta")
    for role, net in networks.items():
        spec = specs[role]
        count = sum(p.numel() for p in net.parameters())
        rows.append(_row(role, spec.kind, getattr(recipe, spec.section).name, registry, count))
    translator = networks.get(trainer_cls.translators.get("AtoB", ""))
    for key, loss in build_losses(recipe, registry).items():
        if isinstance(loss, GeneratorFeatureLoss) and translator is not None:
            # Bound to the (meta) translator as training would: sizes its parameters and
            # refuses a generator it cannot serve before anything runs.
            _bind(loss, translator, key)
        term = recipe.losses[key]
        weight = getattr(loss, "weight", None)
        detail = f"weight {weight:g}" if isinstance(weight, float | int) else ""
        if term.on and term.on != key:
            detail += f", on {term.on}"
        count = sum(p.numel() for p in loss.parameters()) or None
        rows.append(_row(f"losses.{key}", "losses", term.name, registry, count, detail))
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


def create_component(registry: Components, kind: str, name: str, where: str, kwargs: dict
                     ) -> Any:
    """Build one component; an argument problem becomes a RecipeError naming ``[where]``."""
    try:
        return registry.registry(kind).create(name, where=f"[{where}]", **kwargs)
    except ComponentError as exc:
        raise RecipeError(str(exc)) from None
