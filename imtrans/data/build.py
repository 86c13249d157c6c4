"""The dataset a recipe's ``[data]`` table names, with the bundled-sample fallback."""

from __future__ import annotations

from typing import Any

from imtrans.core.components import Components
from imtrans.core.contracts import is_paired
from imtrans.core.observer import TrainingObserver
from imtrans.data.device_augment import DeviceAugment
from imtrans.data.resolve import resolve_root
from imtrans.errors import ComponentError, RecipeError
from imtrans.recipe.schema import Recipe

__all__ = ["build_dataset"]


def build_dataset(recipe: Recipe, registry: Components, observer: TrainingObserver
                  ) -> tuple[Any, DeviceAugment | None]:
    """Build the ``[data]`` dataset, falling back to the bundled sample of ``data.catalog``
    when ``data.root`` is missing (with one line saying so).

    The dataset's arguments are ``recipe.data.kwargs``: the table's other keys, with
    ``data.resize_filter`` among them when it is not the default (the loaders and the device
    cache then resize with it alike).

    Returns:
        The dataset, and the on-device augmentation when ``data.augment = "device"`` (the
        dataset then only resizes to ``load_size``; crop and flip happen on the device).

    Raises:
        RecipeError: ``augment = "device"`` with a preprocessing mode other than
            ``resize_and_crop``.
    """
    kwargs = recipe.data.kwargs
    if "root" in kwargs:
        resolved = resolve_root(kwargs["root"], recipe.data.catalog)
        if resolved.message:
            observer.message(resolved.message)
        kwargs = kwargs | {"root": str(resolved.path)}
    augment = None
    if recipe.data.augment == "device":
        if kwargs.get("preprocess") != "resize_and_crop" or not {"load_size", "crop_size",
                                                                 "flip"} <= kwargs.keys():
            raise RecipeError(
                f'[data] augment = "device" needs a dataset with preprocess = "resize_and_crop", '
                f"load_size, crop_size and flip; got preprocess = {kwargs.get('preprocess')!r}")
        augment = DeviceAugment(crop_size=kwargs["crop_size"], flip=kwargs["flip"],
                                paired=is_paired(registry.datasets.get(recipe.data.name).builder))
        # The loader resizes only: a crop of the full load_size is no crop, and no flip.
        kwargs = kwargs | {"crop_size": kwargs["load_size"], "flip": False}
    try:
        dataset = registry.datasets.create(recipe.data.name, where="[data]", **kwargs)
    except ComponentError as exc:
        raise RecipeError(str(exc)) from None
    return dataset, augment
