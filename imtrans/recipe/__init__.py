"""Recipes: the schema of every table (:mod:`imtrans.recipe.schema`), a leaf that imports
nothing of imtrans but the errors. Loading TOML files with ``--set`` overrides and checking
them against the registries is the catalogue's job (:mod:`imtrans.catalogue.recipe_loader`).

Example:
    >>> from imtrans.recipe import TrainTable
    >>> TrainTable().log_every, TrainTable().log_interval(total_steps=20)
    ('auto', 1)
"""

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
]
