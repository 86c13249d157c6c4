"""imtrans: plugin-based image-to-image translation (pix2pix, CycleGAN and more).

Importing the package is cheap and has no side effects; components are loaded on first use
through :func:`components`, built-ins and plugins alike.

Example:
    >>> import imtrans
    >>> net = imtrans.components().generators.create("resnet_6blocks", ngf=8)
    >>> translate = imtrans.load_translator("runs/cyclegan")  # doctest: +SKIP
"""

from __future__ import annotations

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
from imtrans.hookspecs import hookimpl
from imtrans.plugins import Components, components, load_components
from imtrans.registry import Entry, Registry
from imtrans.version import __version__

__all__ = [
    "CheckpointError",
    "ComponentError",
    "Components",
    "DataError",
    "DuplicateComponentError",
    "Entry",
    "ImtransError",
    "InvalidArgumentError",
    "PluginError",
    "RecipeError",
    "Registry",
    "UnknownComponentError",
    "__version__",
    "components",
    "hookimpl",
    "load_components",
    "load_recipe",
    "load_translator",
]


def __getattr__(name: str) -> object:
    # The recipe layer pulls in the trainers; load it only when asked for.
    if name == "load_recipe":
        from imtrans.recipe import load_recipe

        return load_recipe
    if name == "load_translator":
        from imtrans.inference import load_translator

        return load_translator
    raise AttributeError(f"module 'imtrans' has no attribute {name!r}")
