"""Recipes: the schema of every table (:mod:`imtrans.recipe.schema`, a leaf) and the strict
loading of TOML files with ``--set`` overrides (:mod:`imtrans.recipe.load`).

Example:
    >>> from imtrans.recipe import load_recipe
    >>> load_recipe("recipes/cyclegan_photo2monet.toml").losses["cycle"].kwargs["weight"]
    10.0
"""

from imtrans.recipe.load import (
    apply_override,
    check_components,
    load_recipe,
    parse_override,
    recipe_from_dict,
)
from imtrans.recipe.schema import (
    ComponentTable,
    DataTable,
    EvalTable,
    InitTable,
    LogTable,
    LossTerm,
    OptimTable,
    Recipe,
    RunTable,
    ScheduleTable,
    SpeedTable,
    TrainTable,
)

__all__ = [
    "ComponentTable",
    "DataTable",
    "EvalTable",
    "InitTable",
    "LogTable",
    "LossTerm",
    "OptimTable",
    "Recipe",
    "RunTable",
    "ScheduleTable",
    "SpeedTable",
    "TrainTable",
    "apply_override",
    "check_components",
    "load_recipe",
    "parse_override",
    "recipe_from_dict",
]
