"""imtrans: plugin-based image-to-image translation (pix2pix, CycleGAN and more).

Importing the package is cheap and has no side effects; components are loaded on first use
through :func:`components`, built-ins and plugins alike. The names exported here are the
stable API (see "Stability" in docs/writing-plugins.md): the errors, the registry and plugin
hooks (:data:`hookimpl`, :data:`RegisterFn`), recipes (:class:`Recipe`, :func:`load_recipe`),
training (:func:`train`, :func:`build_training`, :class:`Job`), and inference
(:func:`load_translator`). The heavier ones load on first use.

Example:
    >>> import imtrans
    >>> net = imtrans.components().generators.create("resnet_6blocks", ngf=8)
    >>> recipe = imtrans.load_recipe("recipes/pix2pix_edges2shoes.toml",
    ...                              ["train.max_steps=2", "generator.ngf=4"])
    >>> result = imtrans.train(recipe)  # doctest: +SKIP
    >>> translate = imtrans.load_translator(result.run_dir)  # doctest: +SKIP
"""

from __future__ import annotations

from imtrans.catalogue.plugins import Components, components, load_components
from imtrans.core.hookspecs import RegisterFn, hookimpl
from imtrans.core.registry import Entry, Registry
from imtrans.errors import (
    CheckpointError,
    ComponentError,
    DataError,
    DuplicateComponentError,
    ImtransError,
    InvalidArgumentError,
    PluginError,
    RecipeError,
    UnknownComponentError,
)
from imtrans.version import __version__

__all__ = [
    "CheckpointError",
    "ComponentError",
    "Components",
    "DataError",
    "DuplicateComponentError",
    "Entry",
    "FitResult",
    "ImtransError",
    "InvalidArgumentError",
    "Job",
    "PluginError",
    "Recipe",
    "RecipeError",
    "RegisterFn",
    "Registry",
    "Training",
    "TrainingObserver",
    "TrainingState",
    "UnknownComponentError",
    "__version__",
    "build_training",
    "components",
    "fit",
    "hookimpl",
    "load_components",
    "load_recipe",
    "load_translator",
    "train",
]

#: Names loaded on first use (the recipe layer, training and inference import torch and the
#: trainers), by the module that defines each.
_LAZY = {
    "Recipe": "imtrans.recipe",
    "load_recipe": "imtrans.catalogue.recipe_loader",
    "FitResult": "imtrans.runner",
    "fit": "imtrans.runner",
    "train": "imtrans.runner",
    "Training": "imtrans.training.build",
    "build_training": "imtrans.training.build",
    "Job": "imtrans.training.jobs",
    "TrainingState": "imtrans.training.state",
    "TrainingObserver": "imtrans.core.observer",
    "load_translator": "imtrans.inference",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'imtrans' has no attribute {name!r}")
