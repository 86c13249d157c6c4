"""Property-based tests (hypothesis): the recipe parser and the size and padding arithmetic.

Each test draws a bounded number of examples, so the file runs in seconds.
"""

from __future__ import annotations

import itertools
import math
import string
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imtrans.catalogue.plugins import Components, load_components
from imtrans.catalogue.recipe_loader import load_recipe, parse_override, recipe_from_dict
from imtrans.core.tomlwriter import dumps
from imtrans.errors import RecipeError
from imtrans.inference.tiling import padded_size, reflect_pad, tile_starts, translate_tiled
from imtrans.recipe import Recipe

FEW = settings(max_examples=60, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
MANY = settings(max_examples=100, deadline=None)
REGISTRY: Components = load_components(autoload=False)

# --- strategies ------------------------------------------------------------------------------

#: Text that can be written to a UTF-8 file (no lone surrogates).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
#: Text a path can hold (no NUL: recipes refuse it, see the test below).
PATH_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"),
                    max_size=8)
SCALARS = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), TEXT)
#: Anything a TOML file can hold, nested a little.
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=2)), max_leaves=5)
POSITIVE_FLOATS = st.floats(min_value=1e-8, max_value=1e3, allow_subnormal=False)


def component_table(kind: str, keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A component table: a registered (or arbitrary) name and arbitrary values at keys its
    builders take (or do not)."""
    names = st.sampled_from(REGISTRY.registry(kind).names())
    return st.fixed_dictionaries({"name": names | VALUES},
                                 optional={key: VALUES for key in keys})


DATA_KEYS = ["root", "in_channels", "out_channels", "load_size", "crop_size", "preprocess",
             "direction", "flip", "strict", "max_items", "serial", "batch_size", "num_workers",
             "augment", "catalog"]
NET_KEYS = ["ngf", "ndf", "n_blocks", "n_layers", "num_downs", "norm", "use_dropout",
            "init_type", "in_channels", "wieght"]


# --- the recipe parser -----------------------------------------------------------------------


@MANY
@given(trainer=st.sampled_from(["cyclegan", "pix2pix"]) | VALUES,
       data=component_table("datasets", DATA_KEYS),
       generator=component_table("generators", NET_KEYS),
       discriminator=component_table("discriminators", NET_KEYS),
       losses=st.dictionaries(st.sampled_from(["gan", "cycle", "identity", "l1", "extra"]),
                              component_table("losses", ["weight", "on", "reduction"]),
                              max_size=3),
       sections=st.dictionaries(st.sampled_from([*Recipe.model_fields, "bogus"]),
                                st.dictionaries(TEXT | st.sampled_from(
                                    ["lr", "betas", "log_every", "policy", "seed", "metric"]),
                                    VALUES, max_size=2), max_size=2))
def test_any_recipe_table_is_accepted_or_refused_with_a_recipe_error(
        trainer: Any, data: dict, generator: dict, discriminator: dict, losses: dict,
        sections: dict) -> None:
    raw = {**sections, "trainer": {"name": trainer}, "data": data, "generator": generator,
           "discriminator": discriminator, "losses": losses}
    try:
        recipe = recipe_from_dict(raw, registry=REGISTRY)
    except RecipeError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert recipe.trainer.name == trainer


def valid_raw_recipes() -> st.SearchStrategy[dict[str, Any]]:
    """Recipes that are valid by construction, stating only some keys (as users do)."""
    optim = st.fixed_dictionaries({}, optional={
        "lr": POSITIVE_FLOATS,
        "betas": st.lists(st.floats(0, 0.9999), min_size=2, max_size=2),
        "weight_decay": st.floats(0, 1)})
    train = st.fixed_dictionaries({}, optional={
        "max_steps": st.integers(1, 10**9), "log_every": st.integers(1, 10**6),
        "keep_last": st.integers(1, 100), "checkpoint_minutes": st.floats(0, 1e4)})
    schedule = st.fixed_dictionaries({}, optional={
        "policy": st.sampled_from(["linear", "step", "cosine", "plateau"]),
        "n_epochs": st.integers(0, 10**4), "gamma": st.floats(1e-6, 1.0)})
    # A run name is one folder name (run.name is refused with a path in it).
    name = TEXT.filter(lambda text: text not in ("", ".", "..") and not set(text) & set("/\\\0"))
    run = st.fixed_dictionaries({}, optional={"seed": st.integers(0, 2**32 - 1), "name": name})
    # Equal channel counts in A and B: CycleGAN's identity term compares the two domains.
    channels = st.integers(1, 4)
    data = st.fixed_dictionaries({"root": PATH_TEXT}, optional={
        "batch_size": st.integers(1, 2), "strict": st.booleans(),
        "crop_size": st.sampled_from([64, 128, 256])}).flatmap(
            lambda table: channels.map(lambda c: table | {"in_channels": c, "out_channels": c}))
    generator = st.fixed_dictionaries({"name": st.sampled_from(["resnet_6blocks",
                                                                "resnet_9blocks"])},
                                      optional={"ngf": st.integers(1, 128)})
    return st.fixed_dictionaries({
        "trainer": st.fixed_dictionaries({"name": st.just("cyclegan")}), "data": data},
        optional={"optim": optim, "train": train, "schedule": schedule, "run": run,
                  "generator": generator})


@MANY
@given(before=PATH_TEXT, after=PATH_TEXT)
def test_a_nul_in_a_path_is_a_recipe_error_naming_the_key(before: str, after: str) -> None:
    raw = {"trainer": {"name": "cyclegan"}, "data": {"root": f"{before}\0{after}"}}
    with pytest.raises(RecipeError, match=r"(?s)^data\.root = .*: holds a NUL character"):
        recipe_from_dict(raw, registry=REGISTRY)


@FEW
@given(raw=valid_raw_recipes())
def test_valid_recipes_keep_their_values_and_round_trip(tmp_path_factory: pytest.TempPathFactory,
                                                        raw: dict[str, Any]) -> None:
    path = tmp_path_factory.mktemp("recipe") / "recipe.toml"
    path.write_text(dumps(raw), encoding="utf-8")
    recipe = load_recipe(path, registry=REGISTRY)
    resolved = recipe.resolved()
    for section, table in raw.items():
        for key, value in table.items():
            got = resolved[section][key]
            assert got == (list(value) if isinstance(value, tuple) else value), (section, key)
    # What a run records reads back as the same recipe.
    again = tmp_path_factory.mktemp("again") / "resolved.toml"
    again.write_text(dumps(resolved), encoding="utf-8")
    assert load_recipe(again, registry=REGISTRY) == recipe


def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


INVALID = {
    "train.log_every": st.integers(max_value=0)
    | TEXT.filter(lambda t: _not_a_number(t) and t != "auto"),
    "train.keep_last": st.integers(max_value=0) | st.lists(st.integers(), min_size=1),
    "optim.lr": st.floats(max_value=0) | st.dictionaries(TEXT, SCALARS, min_size=1),
    "schedule.gamma": st.floats(min_value=1.0, exclude_min=True, allow_nan=False)
    | TEXT.filter(_not_a_number),
    "schedule.policy": TEXT.filter(lambda t: t not in ("linear", "step", "cosine", "plateau")),
    "speed.precision": st.integers() | TEXT.filter(lambda t: t not in ("fp32", "bf16")),
    "data.batch_size": st.integers(max_value=0),
}


@MANY
@given(data=st.data(), where=st.sampled_from(sorted(INVALID)))
def test_invalid_values_are_recipe_errors_naming_the_key(data: st.DataObject,
                                                         where: str) -> None:
    value = data.draw(INVALID[where], label="value")
    section, key = where.split(".")
    raw = {"trainer": {"name": "pix2pix"}, "data": {"root": "x"}}
    raw.setdefault(section, {})[key] = value
    # The key's path, or a path inside the value (a table holding inf: optim.lr."" = inf).
    with pytest.raises(RecipeError, match=rf"^{section}\.{key}( = |\.|\[)"):
        recipe_from_dict(raw, registry=REGISTRY)


@MANY
@given(section=st.sampled_from(["run", "optim", "schedule", "train", "eval", "speed"]),
       key=st.text(string.ascii_letters + "_", min_size=1, max_size=12), value=VALUES)
def test_unknown_keys_are_refused_with_their_path(section: str, key: str, value: Any) -> None:
    model = Recipe.model_fields[section].annotation
    if key in model.model_fields:  # type: ignore[union-attr]
        return
    raw = {"trainer": {"name": "cyclegan"}, "data": {"root": "x"}, section: {key: value}}
    # A value that is not finite or holds a NUL is refused as such first; either way the
    # path is named.
    with pytest.raises(RecipeError,
                       match=rf"^{section}\.{key}(: unknown key|.* = .*(not a finite|a NUL))"):
        recipe_from_dict(raw, registry=REGISTRY)


@MANY
@given(text=st.text(st.characters(exclude_categories=("Cs",)), max_size=200))
def test_any_file_content_is_a_recipe_or_a_recipe_error(tmp_path_factory: pytest.TempPathFactory,
                                                         text: str) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzzed.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_recipe(path, registry=REGISTRY)
    except RecipeError as exc:
        assert str(exc).startswith(str(path))


@MANY
@given(text=st.text(max_size=40))
def test_any_override_parses_or_is_a_recipe_error(text: str) -> None:
    try:
        dotted, _ = parse_override(text)
    except RecipeError as exc:
        assert "--set expects section.key=value" in str(exc)
    else:
        assert dotted and all(dotted.split(".")) and dotted == text.partition("=")[0].strip()


@MANY
@given(key=st.from_regex(r"[a-z_]{1,8}(\.[a-z_]{1,8}){0,2}", fullmatch=True),
       value=st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1),
                       st.floats(allow_nan=False), st.lists(st.integers(), max_size=3),
                       st.text(st.characters(exclude_categories=("Cs",)), max_size=10)))
def test_override_values_are_read_as_toml(key: str, value: Any) -> None:
    from imtrans.core.tomlwriter import toml_value

    assert parse_override(f"{key}={toml_value(value)}") == (key, value)


# --- size and padding arithmetic -------------------------------------------------------------


@MANY
@given(size=st.integers(1, 100_000), multiple=st.integers(1, 1024))
def test_padded_size_is_the_smallest_multiple_not_below_size(size: int, multiple: int) -> None:
    padded = padded_size(size, multiple)
    assert padded % multiple == 0
    assert padded >= size and padded >= multiple
    assert padded - multiple < max(size, 1) or padded == multiple  # none smaller fits
    assert padded == multiple * max(1, math.ceil(size / multiple))


@given(size=st.integers(max_value=0), multiple=st.integers(max_value=5))
@settings(max_examples=30, deadline=None)
def test_padded_size_refuses_sizes_below_one(size: int, multiple: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        padded_size(size, multiple)


@FEW
@given(height=st.integers(1, 12), width=st.integers(1, 12), add_h=st.integers(0, 40),
       add_w=st.integers(0, 40), channels=st.integers(1, 3))
def test_reflect_pad_then_crop_returns_the_input(height: int, width: int, add_h: int,
                                                 add_w: int, channels: int) -> None:
    images = torch.randn(2, channels, height, width)
    padded = reflect_pad(images, height + add_h, width + add_w)
    assert padded.shape == (2, channels, height + add_h, width + add_w)
    assert torch.equal(padded[..., :height, :width], images)
    if height > 1 and width > 1:
        # The first rows and columns added mirror the image about its last row and column.
        for i in range(min(add_h, height - 1)):
            assert torch.equal(padded[..., height + i, :width], images[..., height - 2 - i, :])
        for j in range(min(add_w, width - 1)):
            assert torch.equal(padded[..., :height, width + j], images[..., :, width - 2 - j])
    # Every value added is one of the image's own.
    assert set(padded.unique().tolist()) <= set(images.unique().tolist())


@MANY
@given(length=st.integers(1, 5000), tile=st.integers(1, 600), data=st.data())
def test_tiles_cover_the_side_with_the_overlap_asked(length: int, tile: int,
                                                     data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, tile - 1), label="overlap")
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    if length <= tile:
        assert starts == [0]
        return
    assert starts == sorted(set(starts))
    assert starts[-1] + tile == length  # the last tile ends at the edge, none goes past
    for before, after in itertools.pairwise(starts):
        assert before + tile - after >= overlap  # neighbours overlap enough: no gap
    # No more tiles than needed: all but the last advance by the full stride.
    assert all(b - a == tile - overlap for a, b in itertools.pairwise(starts[:-1]))


@given(length=st.integers(2, 100), tile=st.integers(1, 50), extra=st.integers(0, 20))
@settings(max_examples=30, deadline=None)
def test_an_overlap_as_large_as_the_tile_is_refused(length: int, tile: int, extra: int) -> None:
    if length <= tile:
        assert tile_starts(length, tile, tile + extra) == [0]
        return
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(length, tile, tile + extra)


@FEW
@given(height=st.integers(1, 40), width=st.integers(1, 40), tile=st.integers(4, 16),
       data=st.data())
def test_tiled_identity_gives_back_the_image(height: int, width: int, tile: int,
                                             data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, tile - 1), label="overlap")
    images = torch.rand(1, 2, height, width)
    out = translate_tiled(lambda patch: patch * 2 - 1, images, tile, overlap,
                          torch.device("cpu"))
    torch.testing.assert_close(out, images * 2 - 1)

