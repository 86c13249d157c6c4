"""The docs stay in step with the code: component reference, hooks, recipe keys."""

from __future__ import annotations

from pathlib import Path

from imtrans.catalogue.plugins import load_components
from imtrans.catalogue.reference import component_reference
from imtrans.core import hookspecs
from imtrans.recipe import (
    DataTable,
    EvalTable,
    LogTable,
    LossTerm,
    OptimTable,
    Recipe,
    RunTable,
    ScheduleTable,
    SpeedTable,
    TrainTable,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_component_reference_matches_the_registries() -> None:
    expected = component_reference(load_components(autoload=False))
    actual = (DOCS / "components.md").read_text()
    assert actual == expected, (
        "docs/components.md is out of date: "
        "python -m imtrans.catalogue.reference > docs/components.md")


def test_every_hook_is_documented_and_tested() -> None:
    guide = (DOCS / "writing-plugins.md").read_text()
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    for hook in hookspecs.HOOK_NAMES:
        assert f"`{hook}`" in guide, f"{hook} is not documented in docs/writing-plugins.md"
        assert hook in tests.replace("HOOK_NAMES", ""), f"{hook} is not exercised by a test"


def test_every_recipe_key_is_documented() -> None:
    reference = (DOCS / "recipes.md").read_text()
    sections = {"run": RunTable, "optim": OptimTable, "schedule": ScheduleTable,
                "eval": EvalTable, "speed": SpeedTable, "log": LogTable, "train": TrainTable}
    for section, model in sections.items():
        assert f"[{section}]" in reference
        for key in model.model_fields:
            assert f"`{section}.{key}`" in reference, f"{section}.{key} missing from recipes.md"
    for key in [*DataTable.model_fields, *LossTerm.model_fields]:
        assert f"`{key}`" in reference, f"{key} missing from recipes.md"
    for section in Recipe.model_fields:
        assert f"`[{section}" in reference, f"[{section}] missing from recipes.md"
