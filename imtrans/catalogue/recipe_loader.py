"""Loading recipes: TOML files that assemble a training run from registered components.

A recipe states only what differs from the defaults. Defaults come from the code: the table
models of :mod:`imtrans.recipe.schema`, the chosen trainer's
:meth:`~imtrans.trainers.Trainer.recipe_defaults`, and the component builders' signatures.
Loading is strict: an unknown key, a misspelled component name, an argument a builder does not
take, or a value of the wrong type fails with the TOML path.

Example:
    >>> recipe = load_recipe("recipes/pix2pix_edges2shoes.toml", overrides=["optim.lr=1e-4"])
    >>> recipe.optim.lr
    0.0001
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import pydantic

from imtrans.catalogue.component_swap import (
    ComponentSwap,
    is_component_name,
    merge_defaults,
    swap_component,
)
from imtrans.catalogue.output_place import check_output_outside_data
from imtrans.catalogue.plugins import Components, components
from imtrans.core.printable import printable_path
from imtrans.core.registry import accepted_arguments, check_arguments
from imtrans.core.regular_files import read_regular_file
from imtrans.errors import ComponentError, InvalidArgumentError, RecipeError
from imtrans.recipe.schema import CHANNEL_LIMIT, SIZE_LIMIT, ComponentTable, Recipe
from imtrans.trainers.base import ADVERSARIAL_SLOT, DomainChannels, NetworkSpec, Trainer, loss_slots

__all__ = ["apply_override", "apply_overrides", "check_components", "load_recipe",
           "parse_override", "recipe_from_dict"]

#: The largest recipe file read: a real recipe is a few KB (the bundled ones are under 1 KB).
MAX_RECIPE_BYTES = 1 << 20


def load_recipe(
    path: str | Path,
    overrides: Iterable[str] = (),
    *,
    registry: Components | None = None,
    notices: list[str] | None = None,
) -> Recipe:
    """Read, override, complete and validate a recipe file.

    Args:
        path: The TOML file.
        overrides: ``section.key=value`` strings applied before validation; the value is read
            as TOML (``5``, ``1e-4``, ``true``, ``[0.5, 0.9]``), else taken as a string.
        registry: The components to check names against (default: the loaded plugins).
        notices: Receives one line for each override that names another component in a
            table, saying what it kept of the old one's settings and dropped:
            ``--set losses.cycle.name=l1: kept weight = 10.0`` (see
            :mod:`imtrans.catalogue.component_swap`).

    Raises:
        RecipeError: with the TOML path and value of the first problem found; when the file
            is not a regular file (a FIFO, a device, a folder) or is larger than
            :data:`MAX_RECIPE_BYTES` (refused before it is read). Whether the recipe can
            run on this machine is the build's check
            (:func:`imtrans.training.feasibility.check_feasible`): loading builds nothing.
    """
    path = Path(path)
    registry = registry or components()
    # A regular file of at most MAX_RECIPE_BYTES, checked before a byte is read: a FIFO
    # would block, /dev/zero never ends, and a 10 MB file took minutes and GBs to parse.
    data = read_regular_file(path, what="recipe", max_bytes=MAX_RECIPE_BYTES, error=RecipeError,
                             missing=f"recipe not found: {path}")
    try:
        # utf-8-sig: an editor's byte-order mark at the start is not part of the TOML.
        raw = tomllib.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise RecipeError(f"{path}: not valid TOML: nested too deeply") from None
    swaps = [(f"--set {given}: {swap.describe()}", swap.where)
             for given, swap in apply_overrides(raw, overrides, registry=registry)
             if swap.describe()]
    try:
        recipe = recipe_from_dict(raw, registry=registry)
    except RecipeError as exc:
        # What a swap dropped may be what its table misses now (a dataset's root): said too.
        said = [line for line, where in swaps if f"[{where}]" in str(exc)
                or re.search(rf"(^|\W){re.escape(where)}\.", str(exc))]
        why = f" (after {'; '.join(said)})" if said else ""
        raise RecipeError(f"{path}: {exc}{why}") from None
    if notices is not None:
        notices += [line for line, _ in swaps]
    return recipe


def recipe_from_dict(raw: Mapping[str, Any], *, registry: Components | None = None) -> Recipe:
    """Complete ``raw`` with the trainer's defaults and validate it (see :func:`load_recipe`).

    A table naming another component than the trainer's default keeps the settings of its
    place (a loss term's weight) and drops the default component's own arguments
    (:func:`imtrans.catalogue.component_swap.merge_defaults`).
    """
    registry = registry or components()
    _refuse_nonfinite(raw)
    trainer_cls = _trainer_class(raw, registry)
    merged = merge_defaults(trainer_cls.recipe_defaults(), raw, registry)
    try:
        recipe = Recipe.model_validate(merged)
    except pydantic.ValidationError as exc:
        raise RecipeError(_describe(exc)) from None
    except RecursionError:  # a value nested thousands of lists deep
        raise RecipeError("a value is nested too deeply") from None
    recipe = check_components(recipe, registry)
    _check_data_bounds(recipe)
    # The run's files must not become data: refused here, so validate and run agree.
    dataset = registry.registry("datasets").get(recipe.data.name).builder
    check_output_outside_data(recipe, dataset)
    _check_same_channels(recipe, trainer_cls)
    return recipe


def _check_same_channels(recipe: Recipe, trainer_cls: type[Trainer]) -> None:
    """Refuse a term of a slot that compares both domains' images (CycleGAN's identity)
    when their channel counts differ: the step would fail on the first batch."""
    a, b = recipe.data.channels()
    for key, term in recipe.losses.items():
        slot = term.on or key
        if slot in trainer_cls.same_channel_slots and a != b and term.kwargs.get("weight") != 0:
            raise RecipeError(
                f"[losses.{key}]: slot {slot!r} compares images of both domains, so it needs "
                f"data.in_channels = data.out_channels (here {a} and {b}); set "
                f"losses.{key}.weight = 0 to leave it out")


#: Tables and lists nest at most this deep in a recipe (its own tables take three levels).
_MAX_DEPTH = 32


def _refuse_nonfinite(raw: Mapping[str, Any]) -> None:
    """Refuse inf and nan anywhere: no setting means "unbounded" by them, and a rate or weight
    of inf or nan turns every weight to NaN at the first step. Refuse text with a NUL or
    that is not UTF-8. Refuse values nested deeper
    than :data:`_MAX_DEPTH` too, before the recursive merge and validation meet them."""
    stack: list[tuple[str, int, Any]] = [("", 0, raw)]
    while stack:  # a loop, not recursion: a value may be nested deeper than Python recurses
        where, depth, value = stack.pop()
        if depth > _MAX_DEPTH:
            raise RecipeError(f"{where[:200]}: nested more than {_MAX_DEPTH} levels deep")
        if isinstance(value, Mapping):
            stack += [(f"{where}.{_toml_key(k)}" if where else _toml_key(k), depth + 1, v)
                      for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{where}[{i}]", depth + 1, v) for i, v in enumerate(value)]
        elif isinstance(value, float) and not math.isfinite(value):
            raise RecipeError(f"{where} = {value!r}: not a finite number")
        elif isinstance(value, str) and "\0" in value:
            # No path, name or key can hold a NUL: the operating system refuses it, so it
            # is refused here with the setting that holds it, not as a traceback later.
            raise RecipeError(f"{printable_path(where)} = {_quoted(value)}: holds a NUL "
                              "character, which no path or name may contain")
        elif isinstance(value, str) and not _is_utf8(where + value):
            # A name with bytes that are not UTF-8 (from --set or the shell): the run's
            # recipe.toml could not hold it, and no later resume could name it again.
            raise RecipeError(f"{printable_path(where)} = {_quoted(value)}: not "
                              "UTF-8 text (a recipe holds UTF-8 only); rename the file or "
                              "folder, or give a link to it with a UTF-8 name")


def _quoted(text: str) -> str:
    """``text`` quoted on one line: characters that do not print (a NUL, a newline) escaped."""
    shown = printable_path(text)
    return '"' + "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                         for ch in shown) + '"'



def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_data_bounds(recipe: Recipe) -> None:
    """Bound the [data] channel counts and image sides (the folder datasets' arguments, and a
    plugin dataset's of the same name): beyond them a run fails or cannot fit in memory."""
    limits = {"in_channels": CHANNEL_LIMIT, "out_channels": CHANNEL_LIMIT,
              "load_size": SIZE_LIMIT, "crop_size": SIZE_LIMIT}
    kwargs = recipe.data.kwargs
    for key, limit in limits.items():
        value = kwargs.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= limit:
            raise RecipeError(f"data.{key} = {value}: must be from 1 to {limit}")


def check_components(recipe: Recipe, registry: Components) -> Recipe:
    """Check every component name and argument in ``recipe`` against the registries.

    Returns:
        The recipe with each component table completed by its builder's defaults and its
        values coerced to the annotated types, so that a run records every setting.

    Raises:
        RecipeError: naming the table, e.g. ``[losses.cycle]: unexpected argument 'wieght'``.
    """
    tables: list[tuple[str, str, ComponentTable]] = [
        ("trainers", "trainer", recipe.trainer),
        ("datasets", "data", recipe.data),
        ("generators", "generator", recipe.generator),
        ("discriminators", "discriminator", recipe.discriminator),
    ]
    tables += [("losses", f"losses.{key}", term) for key, term in recipe.losses.items()]
    # Arguments first: laying out the networks below reads some of them (the [data] channel
    # counts), which must be the right type by then.
    checked = [(where, *_check_table(registry, kind, where, table))
               for kind, where, table in tables]
    trainer_cls: type[Trainer] = checked[0][1]  # [trainer], checked first
    _check_slots(recipe, trainer_cls)
    specs = _network_specs(trainer_cls, checked[0][2], recipe)
    _check_overrides(recipe, specs)
    # Arguments the trainer sets itself (channel counts) stay out of the written recipe.
    set_by_trainer: dict[str, set[str]] = {}
    for spec in specs.values():
        set_by_trainer.setdefault(spec.section, set()).update(spec.overrides)
    completed = recipe.model_dump(exclude_none=True)
    for where, builder, values in checked:
        node = completed
        for part in where.split("."):
            node = node[part]
        node.update(_defaults(builder, leave_out=set_by_trainer.get(where, ())) | values)
    completed["log"] = _check_loggers(recipe, registry)
    return Recipe.model_validate(completed)


#: The builder argument the engine passes to every logger; a recipe cannot set it.
_LOGGER_RUN_DIR = "run_dir"


def _check_loggers(recipe: Recipe, registry: Components) -> dict[str, Any]:
    """Check ``[log]``: every backend registered, every ``[log.<name>]`` table one of them,
    with arguments its builder takes. Returns the table completed with their defaults."""
    log = recipe.log
    # The table's own keys (backends, the preview options) as they are; the backends'
    # tables, checked below, with their defaults.
    completed: dict[str, Any] = log.model_dump(exclude_none=True,
                                               exclude=set(log.model_extra or {}))
    for name in (log.model_extra or {}):
        if name not in log.trackers:
            raise RecipeError(f"[log.{name}]: {name!r} is not in log.backends "
                              f"({log.backends}); add it there or remove the table")
    for name in log.trackers:
        where = f"[log.{name}]"
        options = log.options(name)
        if _LOGGER_RUN_DIR in options:
            raise RecipeError(f"{where}: {_LOGGER_RUN_DIR} is set by the run, not the recipe")
        try:
            builder = registry.loggers.get(name).builder
            values = check_arguments(builder, options | {_LOGGER_RUN_DIR: Path()}, where)
        except ComponentError as exc:
            message = str(exc)
            raise RecipeError(message if message.startswith("[") else
                              f"log.backends: {message}") from None
        values.pop(_LOGGER_RUN_DIR)
        defaults = _defaults(builder, leave_out={_LOGGER_RUN_DIR})
        if defaults or values:
            completed[name] = defaults | values
    return completed


def _defaults(builder: Any, *, leave_out: Collection[str]) -> dict[str, Any]:
    """The defaults of a builder's arguments (those without one, or None, are left out)."""
    return {name: param.default for name, param in accepted_arguments(builder).items()
            if param.default not in (param.empty, None) and name not in leave_out}


def _check_table(registry: Components, kind: str, where: str, table: ComponentTable
                 ) -> tuple[Any, dict[str, Any]]:
    """The builder a table names and its arguments, checked and coerced."""
    try:
        builder = registry.registry(kind).get(table.name).builder
        return builder, check_arguments(builder, table.kwargs, f"[{where}]")
    except ComponentError as exc:
        message = str(exc)
        if not message.startswith("["):
            message = f"[{where}] name = {table.name!r}: {message}"
        raise RecipeError(message) from None


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str], *,
                    registry: Components | None = None) -> list[tuple[str, ComponentSwap]]:
    """Apply ``section.key=value`` overrides to a raw recipe dict (see :func:`apply_override`).

    The ones naming a component come first (the trainer's first of all), so that the
    arguments given with a new name are its own whatever their order:
    ``--set generator.ngf=32 --set generator.name=unet`` keeps ``ngf = 32``.

    Returns:
        Each override that swapped a component, with what it kept and dropped.
    """
    def order(override: str) -> int:
        dotted = override.partition("=")[0].strip()
        return 0 if dotted == "trainer.name" else 1 if is_component_name(dotted) else 2

    swaps, given = [], set()
    for override in sorted(overrides, key=order):  # a stable sort: same rank, same order
        swap = apply_override(raw, override, registry=registry)
        if swap is not None:
            swaps.append((override, swap))
        given.add(override.partition("=")[0].strip())
    # What an override sets itself was neither kept from the old component nor dropped.
    return [(override, swap.without(given)) for override, swap in swaps]


def apply_override(raw: dict[str, Any], override: str, *,
                   registry: Components | None = None) -> ComponentSwap | None:
    """Set ``section.key=value`` in a raw recipe dict, creating tables on the way.

    Naming another component in a component table (``losses.cycle.name=huber``) keeps the
    settings of the place (the term's weight) and drops the old component's own arguments
    (:func:`imtrans.catalogue.component_swap.swap_component`); ``registry`` (default: the
    loaded plugins) says which arguments the new one takes.

    Returns:
        What a component swap kept and dropped, else None.
    """
    dotted, value = parse_override(override)
    *tables, key = dotted.split(".")
    node = raw
    for i, table in enumerate(tables):
        child = node.setdefault(table, {})
        if not isinstance(child, dict):
            here = ".".join(tables[: i + 1])
            raise RecipeError(f"--set {override!r}: {here} is a value, not a table")
        node = child
    if is_component_name(dotted):
        return swap_component(raw, node, tuple(tables), value, registry or components())
    node[key] = value
    return None


def parse_override(override: str) -> tuple[str, Any]:
    """Split ``a.b=value`` into ``("a.b", value)``, reading the value as TOML when it parses.

    Raises:
        RecipeError: no ``=``, or an empty key part.
    """
    dotted, sep, text = override.partition("=")
    dotted = dotted.strip()
    if not sep or not dotted or any(not part for part in dotted.split(".")):
        raise RecipeError(f"--set expects section.key=value, got {override!r}")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word such as resnet_6blocks is meant as a string
    except RecursionError:
        raise RecipeError(f"--set {dotted}: the value is nested too deeply") from None
    return dotted, value


def _trainer_class(raw: Mapping[str, Any], registry: Components) -> type[Trainer]:
    table = raw.get("trainer")
    if not isinstance(table, Mapping) or "name" not in table:
        known = ", ".join(registry.trainers.names())
        raise RecipeError(f'[trainer] name is required, e.g. name = "cyclegan"; known: {known}')
    try:
        builder = registry.trainers.get(table["name"]).builder
    except ComponentError as exc:
        raise RecipeError(f"[trainer] name = {table['name']!r}: {exc}") from None
    if not (isinstance(builder, type) and issubclass(builder, Trainer)):
        raise RecipeError(f"[trainer] {table['name']!r} is not a Trainer subclass: {builder!r}")
    return builder


def _check_slots(recipe: Recipe, trainer_cls: type[Trainer]) -> None:
    slots = loss_slots(trainer_cls)
    for key, term in recipe.losses.items():
        slot = term.on or key
        if slot not in slots:
            known = ", ".join(slots)
            raise RecipeError(
                f"[losses.{key}]: trainer {recipe.trainer.name!r} has no loss slot {slot!r}; "
                f"slots: {known} (set on = \"SLOT\" to add a term to one)"
            )
    adversarial = [k for k, t in recipe.losses.items()
                   if (t.on or k) == ADVERSARIAL_SLOT]
    if len(adversarial) != 1:
        raise RecipeError(
            f"[losses]: trainer {recipe.trainer.name!r} needs exactly one term in slot "
            f"{ADVERSARIAL_SLOT!r}, got {len(adversarial)}: {', '.join(adversarial)}")


def _network_specs(trainer_cls: type[Trainer], kwargs: dict[str, Any], recipe: Recipe
                   ) -> dict[str, NetworkSpec]:
    """The networks the trainer the recipe names lays out for its data's channel counts."""
    try:
        trainer = trainer_cls(**kwargs)
        return trainer.networks(DomainChannels(*recipe.data.channels()))
    except InvalidArgumentError as exc:
        raise RecipeError(f"[trainer]: {exc}") from None


def _check_overrides(recipe: Recipe, specs: dict[str, NetworkSpec]) -> None:
    """Refuse arguments the trainer sets itself, so the recipe and the networks agree."""
    for spec in specs.values():
        table: ComponentTable = getattr(recipe, spec.section)
        for key in spec.overrides:
            if key in table.kwargs:
                raise RecipeError(
                    f"[{spec.section}] {key}: set by trainer {recipe.trainer.name!r} from the "
                    "[data] channel counts (in_channels, out_channels); set those instead"
                )


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a recipe table at ``loc`` (a pydantic error location) accepts."""
    model: Any = Recipe
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return list(model.model_fields)


def _toml_key(part: str | int) -> str:
    """A key as TOML writes it: bare when it can be, else quoted with escapes (so a key holding
    a newline or a dot cannot break the one-line message or be misread)."""
    text = str(part)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else json.dumps(text)


def _toml_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a TOML path: ``optim.betas[0]``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{_toml_key(part)}" if path else _toml_key(part)
    return path


def _describe(exc: pydantic.ValidationError) -> str:
    """The first pydantic error as ``path: problem (got value)`` in TOML terms."""
    lines = []
    for error in exc.errors():
        path = _toml_path(error["loc"])
        if error["type"] == "extra_forbidden":
            known = _known_keys(error["loc"][:-1])
            close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(f"{path}: unknown key (value {error['input']!r}){hint} "
                         f"known: {', '.join(known)}")
        elif error["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        else:
            lines.append(f"{path} = {error['input']!r}: {error['msg']}")
    return "; ".join(lines)
