"""The trainer's defaults under a recipe, and what a table naming another component keeps.

A recipe's tables are merged over the defaults its trainer brings, key by key. A component
table that names another component than the default's (``[losses.cycle] name = "huber"``, or
``--set losses.cycle.name=huber``) swaps the component in that place: the default component's
own arguments are dropped (they may not apply to the new one), and the settings of the place
itself are kept. Those are the keys the recipe schema defines for the table (a loss term's
``on``, ``[data]``'s ``batch_size``...) and a loss term's ``weight``, its weight in the
objective, when the new loss takes one: CycleGAN's ``cycle`` term keeps its weight of 10.
:func:`swap_component` makes a swap that an override asks for (``--set losses.cycle.name=huber``)
and returns a :class:`ComponentSwap`, so that loading can say what it kept and dropped.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from imtrans.core.components import Components
from imtrans.core.registry import accepted_arguments
from imtrans.errors import ComponentError
from imtrans.recipe.schema import ComponentTable, DataTable, LossTerm

__all__ = ["LOSS_SLOT_ARGUMENTS", "ComponentSwap", "is_component_name", "merge_defaults",
           "swap_component"]

#: Arguments of a loss that belong to the term's place in the objective, not to the loss: a
#: new loss in that place keeps them (when it takes them).
LOSS_SLOT_ARGUMENTS = ("weight",)

#: The component tables at the top of a recipe, with the model of each.
_TABLES: dict[str, type[ComponentTable]] = {
    "trainer": ComponentTable,
    "data": DataTable,
    "generator": ComponentTable,
    "discriminator": ComponentTable,
}
#: The registry of each of them.
_KINDS = {"trainer": "trainers", "data": "datasets", "generator": "generators",
          "discriminator": "discriminators"}


@dataclass(frozen=True)
class ComponentSwap:
    """An override that named another component in a table, and what it did to the table.

    Attributes:
        where: The table, ``losses.cycle``.
        old: The component named there before (the trainer's default's, or the recipe's).
        new: The name the override gives.
        kept: The settings of the place the new component keeps, e.g. ``{"weight": 10.0}``.
        dropped: The old component's own arguments, left out (but those the new one takes
            with the same value by default: nothing changes there).
    """

    where: str
    old: str
    new: str
    kept: dict[str, Any]
    dropped: dict[str, Any]

    def without(self, given: Iterable[str]) -> ComponentSwap:
        """This swap less the keys ``given`` (dotted: ``losses.cycle.weight``) set anew."""
        keys = {dotted.rpartition(".")[2] for dotted in given
                if dotted.rpartition(".")[0] == self.where}
        return replace(self, kept={k: v for k, v in self.kept.items() if k not in keys},
                       dropped={k: v for k, v in self.dropped.items() if k not in keys})

    def describe(self) -> str:
        """What was kept and dropped: ``kept weight = 10.0; dropped the arguments of l1:
        reduction = "sum"`` (empty when nothing was)."""
        parts = []
        if self.kept:
            parts.append(f"kept {_listed(self.kept)}")
        if self.dropped:
            parts.append(f"dropped the arguments of {self.old}: {_listed(self.dropped)}")
        return "; ".join(parts)


def merge_defaults(defaults: Mapping[str, Any], raw: Mapping[str, Any],
                   registry: Components) -> dict[str, Any]:
    """``raw`` (a recipe as read) over the trainer's ``defaults``, table by table; a component
    table naming another component than the default's keeps only its place's settings of it
    (see the module docstring)."""
    return _merge(defaults, raw, (), registry)


def is_component_name(dotted: str) -> bool:
    """Whether ``dotted`` (an override's key) is the ``name`` of a component table."""
    parts = dotted.split(".")
    return parts[-1] == "name" and (
        (len(parts) == 2 and parts[0] in _TABLES) or (len(parts) == 3 and parts[0] == "losses"))


def swap_component(raw: Mapping[str, Any], table: dict[str, Any], where: tuple[str, ...],
                   name: Any, registry: Components) -> ComponentSwap | None:
    """Name ``name`` in ``table``, the table of ``raw`` at ``where`` (changed in place).

    When the table (merged over the trainer's default) names another component, the new one
    gets only the settings of the place: the old component's own arguments are dropped, from
    the default, the recipe file or a resolved recipe alike.

    Returns:
        What was kept and dropped, or None when no component was named there before, or the
        same one.
    """
    old = _effective_table(raw, where, registry)
    old_name = old.get("name")
    if not isinstance(old_name, str) or not isinstance(name, str) or old_name == name:
        table["name"] = name
        return None
    place = _place_keys(where, name, registry)
    kept = {k: v for k, v in old.items() if k != "name" and k in place}
    dropped = {k: v for k, v in old.items() if k != "name" and k not in place}
    table.clear()
    table.update({"name": name} | copy.deepcopy(kept))
    # An argument the new component takes with the same default changes nothing: unsaid.
    same = _defaults(registry, where, name)
    dropped = {k: v for k, v in dropped.items() if k not in same or same[k] != v}
    return ComponentSwap(".".join(where), old_name, name, kept, dropped)


def _defaults(registry: Components, where: tuple[str, ...], name: str) -> dict[str, Any]:
    """The defaults of the arguments of the component ``name`` for the table at ``where``."""
    kind = "losses" if where[0] == "losses" else _KINDS.get(where[0], "")
    try:
        builder = registry.registry(kind).get(name).builder
    except ComponentError:
        return {}
    return {k: p.default for k, p in accepted_arguments(builder).items()
            if p.default is not p.empty}


def _effective_table(raw: Mapping[str, Any], where: tuple[str, ...],
                     registry: Components) -> dict[str, Any]:
    """The table at ``where`` as the recipe would have it: ``raw`` over the trainer's
    defaults ({} when the trainer is unknown or the recipe too odd: loading says why)."""
    try:
        trainer: Any = registry.trainers.get(str(raw["trainer"]["name"])).builder
        defaults = trainer.recipe_defaults()  # a Trainer class: checked when loading
    except (KeyError, TypeError, AttributeError, ComponentError):
        defaults = {}
    try:
        node: Any = _merge(defaults, raw, (), registry)
    except RecursionError:  # nested deeper than Python recurses: refused when validated
        return {}
    for part in where:
        node = node.get(part) if isinstance(node, Mapping) else None
    return dict(node) if isinstance(node, Mapping) else {}


def _merge(base: Mapping[str, Any], top: Mapping[str, Any], path: tuple[str, ...],
           registry: Components) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in top.items():
        below = merged.get(key)
        where = (*path, str(key))
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            if "name" in value and value["name"] != below.get("name"):
                place = _place_keys(where, value["name"], registry)
                kept = {k: v for k, v in below.items() if k in place and k not in value}
                merged[key] = copy.deepcopy(kept) | copy.deepcopy(dict(value))
            else:
                merged[key] = _merge(below, value, where, registry)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _place_keys(where: tuple[str, ...], name: Any, registry: Components) -> set[str]:
    """The keys of the table at ``where`` that belong to the place, whatever fills it."""
    if len(where) == 2 and where[0] == "losses":
        keys = set(LossTerm.model_fields) - {"name"}
        return keys | {k for k in LOSS_SLOT_ARGUMENTS if _takes(registry, "losses", name, k)}
    if len(where) == 1 and where[0] in _TABLES:
        return set(_TABLES[where[0]].model_fields) - {"name"}
    return set()


def _takes(registry: Components, kind: str, name: Any, argument: str) -> bool:
    """Whether the component ``name`` takes ``argument`` (one the registry does not know:
    yes, and loading refuses what is wrong, the name or the argument)."""
    try:
        builder = registry.registry(kind).get(str(name)).builder
    except ComponentError:
        return True
    parameters = inspect.signature(builder).parameters.values()
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    return takes_any or argument in accepted_arguments(builder)


def _listed(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} = {json.dumps(value, default=str)}" for key, value in values.items())
