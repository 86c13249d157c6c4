"""recipe.toml and ``imtrans validate --print`` are TOML that ``tomllib`` reads back equal:
written by tomli-w (``imtrans.core.tomlwriter``), whatever the keys and values hold.

The writer before it wrote a non-ASCII key bare (``café = 1``, which tomllib refuses) and
raised TypeError on an array of tables. Property tests draw tables with non-ASCII keys and
values, and valid recipes with non-ASCII names, paths and loss keys; each draws a bounded
number of examples (the settings of tests/test_properties.py).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from imtrans.catalogue.recipe_loader import load_recipe, parse_override, recipe_from_dict
from imtrans.cli import cli
from imtrans.core.tomlwriter import dumps, toml_value
from imtrans.runs.directory import write_run_record
from tests.test_properties import FEW, MANY, REGISTRY, valid_raw_recipes

ROOT = Path(__file__).resolve().parents[1]

#: Keys and words of other scripts, drawn often (arbitrary text rarely holds them).
NON_ASCII = st.sampled_from(["café", "naïve", "Ωmega", "ключ", "名前", "🙂", "straße", "é"])
#: Any text a UTF-8 file can hold (no lone surrogates): controls, quotes, DEL, newlines.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
KEYS = NON_ASCII | TEXT
SCALARS = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(),
                    NON_ASCII, TEXT)
#: Values nested a little: arrays, tables, and arrays of tables.
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3),
    st.lists(st.dictionaries(KEYS, inner, max_size=3), min_size=1, max_size=3)),
    max_leaves=8)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=4)


def same(written: Any, read: Any) -> bool:
    """Equal values of equal types (``1`` is not ``1.0`` nor ``True``), NaN equal to NaN."""
    if type(written) is not type(read):
        return False
    if isinstance(written, float):
        return written == read or (math.isnan(written) and math.isnan(read))
    if isinstance(written, list):
        return len(written) == len(read) and all(map(same, written, read))
    if isinstance(written, dict):
        return written.keys() == read.keys() and all(same(v, read[k])
                                                     for k, v in written.items())
    return bool(written == read)


@MANY
@given(document=DOCUMENTS)
def test_any_table_reads_back_equal(document: dict[str, Any]) -> None:
    text = dumps(document)
    assert same(document, tomllib.loads(text)), text


@MANY
@given(key=st.from_regex(r"[a-z_]{1,8}(\.[a-z_]{1,8}){0,2}", fullmatch=True), value=VALUES)
def test_one_value_is_one_line_that_set_reads_back(key: str, value: Any) -> None:
    text = toml_value(value)
    assert "\n" not in text
    parsed_key, parsed = parse_override(f"{key}={text}")
    assert parsed_key == key and same(value, parsed), text


def valid_recipes_of_other_scripts() -> st.SearchStrategy[dict[str, Any]]:
    """Valid recipes (tests/test_properties.py's) with a non-ASCII run name and data folder,
    and an extra loss term under a non-ASCII key."""
    name = (NON_ASCII | st.text(st.characters(categories=("L", "N")), min_size=1, max_size=8))
    loss_key = name.filter(lambda key: key not in ("adversarial", "cycle", "identity"))
    term = st.fixed_dictionaries({"name": st.just("l1"),
                                  "on": st.sampled_from(["cycle", "identity"]),
                                  "weight": st.floats(0, 10)})
    return st.tuples(valid_raw_recipes(), name, name, loss_key, term).map(
        lambda drawn: drawn[0] | {
            "run": drawn[0].get("run", {}) | {"name": drawn[1]},
            "data": drawn[0]["data"] | {"root": f"données/{drawn[2]}"},
            "losses": {drawn[3]: drawn[4]}})


@FEW
@given(raw=valid_recipes_of_other_scripts())
def test_valid_recipes_of_other_scripts_read_back_and_load_equal(
        tmp_path_factory: pytest.TempPathFactory, raw: dict[str, Any]) -> None:
    path = tmp_path_factory.mktemp("recipe") / "recipe.toml"
    path.write_text(dumps(raw), encoding="utf-8")
    recipe = load_recipe(path, registry=REGISTRY)
    resolved = recipe.resolved()
    assert resolved["run"]["name"] == raw["run"]["name"]
    assert resolved["data"]["root"] == raw["data"]["root"]
    (loss_key, term), = raw["losses"].items()
    assert {k: resolved["losses"][loss_key][k] for k in term} == term
    # What a run records (recipe.toml) reads back as the same values and the same recipe.
    text = dumps(resolved)
    assert same(resolved, tomllib.loads(text))
    again = tmp_path_factory.mktemp("again") / "recipe.toml"
    again.write_text(text, encoding="utf-8")
    assert load_recipe(again, registry=REGISTRY) == recipe


def test_a_non_ascii_key_is_quoted() -> None:
    text = dumps({"run": {"café": 1, "name": "été"}})
    assert text == '[run]\n"café" = 1\nname = "été"\n'
    assert tomllib.loads(text) == {"run": {"café": 1, "name": "été"}}


def test_arrays_of_tables_are_written() -> None:
    """Short tables go inline in the array; longer ones as ``[[name]]`` sections."""
    short = {"pools": [{"size": 50, "domain": "A"}, {"size": 0, "nom": "été"}]}
    assert tomllib.loads(dumps(short)) == short
    long = {"trackers": [{"name": "wandb", "project": "p" * 60, "tags": ["a", "b"],
                          "options": {"entity": "équipe"}},
                         {"name": "tensorboard", "folder": "runs/tb" + "/x" * 40}]}
    text = dumps(long)
    assert text.count("[[trackers]]\n") == 2
    assert tomllib.loads(text) == long


def test_none_is_refused_as_before() -> None:
    """TOML has no null: the old writer raised TypeError, and so does this one. A resolved
    recipe leaves unset values out (``exclude_none``), so recipe.toml never meets one."""
    with pytest.raises(TypeError):
        dumps({"run": {"name": None}})
    with pytest.raises(TypeError):
        toml_value(None)


NAMED = {"run": {"name": "café-名前", "device": "cpu"},
         "losses": {"identité": {"name": "l1", "on": "identity", "weight": 0.5}}}


def test_recipe_toml_of_a_run_reads_back_as_its_recipe(tmp_path: Path) -> None:
    recipe = recipe_from_dict({"trainer": {"name": "cyclegan"},
                               "data": {"root": str(tmp_path / "données")}, **NAMED},
                              registry=REGISTRY)
    write_run_record(tmp_path, recipe.resolved(), REGISTRY, torch.device("cpu"))
    text = (tmp_path / "recipe.toml").read_text(encoding="utf-8")
    assert '"identité"' in text
    assert tomllib.loads(text) == recipe.resolved()
    assert load_recipe(tmp_path / "recipe.toml", registry=REGISTRY) == recipe


def test_validate_print_is_the_resolved_recipe_as_toml(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMTRANS_DISABLE_PLUGIN_AUTOLOAD", "1")
    overrides = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4",
                 "discriminator.ndf=4", "data.num_workers=0", "run.device=cpu",
                 f"run.output_dir={tmp_path / 'runs'}", "run.name='café-名前'",
                 "losses.identité={ name = 'l1', on = 'identity', weight = 0.5 }"]
    args = ["validate", str(ROOT / "recipes" / "cyclegan_photo2monet.toml"), "--print",
            *(arg for override in overrides for arg in ("--set", override))]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("[run]")
    end = next(i for i, line in enumerate(lines) if line.startswith("recipe ")
               and line.endswith("parameters"))
    printed = tomllib.loads("\n".join(lines[start:end]))
    assert printed["run"]["name"] == "café-名前"
    assert printed["losses"]["identité"] == {"name": "l1", "on": "identity", "weight": 0.5,
                                             "reduction": "mean"}
    recipe = load_recipe(ROOT / "recipes" / "cyclegan_photo2monet.toml", overrides,
                         registry=REGISTRY)
    assert printed == recipe.resolved()
