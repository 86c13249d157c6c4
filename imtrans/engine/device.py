"""Getting ready to train: the device, the seeds, and the dataset a recipe names."""

from __future__ import annotations

import random
from typing import Any

import torch

from imtrans.data.device_augment import DeviceAugment
from imtrans.engine.observer import TrainingObserver
from imtrans.errors import DataError, RecipeError
from imtrans.plugins import Components
from imtrans.recipe import Recipe

__all__ = ["build_dataset", "check_image_size", "seed_everything", "select_device"]


def select_device(name: str, observer: TrainingObserver) -> torch.device:
    """The device ``run.device`` names; ``auto`` picks the GPU when there is one.

    Raises:
        RecipeError: the name is not a device, or names a GPU this machine lacks.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        observer.message("no GPU found: training on the CPU. That is fine for small runs; "
                         "full-size recipes take days there, and a GPU is advised.")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise RecipeError(f"run.device = {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"run.device = {name!r}, but no CUDA device is available "
                          '(use "auto" or "cpu")')
    return device


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and GPUs), Python's ``random`` and numpy, for reproducible runs."""
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # numpy is optional for torch; nothing to seed then
        return
    np.random.seed(seed % 2**32)


def build_dataset(recipe: Recipe, registry: Components, observer: TrainingObserver
                  ) -> tuple[Any, DeviceAugment | None]:
    """Build the ``[data]`` dataset, falling back to the bundled sample of ``data.catalog``
    when ``data.root`` is missing (with one line saying so).

    Returns:
        The dataset, and the on-device augmentation when ``data.augment = "device"`` (the
        dataset then only resizes to ``load_size``; crop and flip happen on the device).

    Raises:
        RecipeError: ``augment = "device"`` with a preprocessing mode other than
            ``resize_and_crop``.
    """
    from imtrans.assembly import create_component
    from imtrans.data.resolve import resolve_root

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
                                paired=getattr(registry.datasets.get(recipe.data.name).builder,
                                               "paired", True))
        # The loader resizes only: a crop of the full load_size is no crop, and no flip.
        kwargs = kwargs | {"crop_size": kwargs["load_size"], "flip": False}
    dataset = create_component(registry, "datasets", recipe.data.name, "data", kwargs)
    return dataset, augment


def check_image_size(networks: dict[str, torch.nn.Module], batch: dict[str, torch.Tensor],
                     recipe: Recipe) -> None:
    """Refuse images the generators cannot take (a U-Net halves the size ``num_downs`` times).

    Raises:
        DataError: naming the size the data gives, the multiple needed and what to change.
    """
    height, width = batch["A"].shape[-2:]
    for role, network in networks.items():
        multiple = getattr(network, "size_multiple", 1)
        if height % multiple or width % multiple:
            raise DataError(
                f"{role} ({recipe.generator.name}) takes images whose sides are multiples of "
                f"{multiple}, but [data] gives {width}x{height}: set data.crop_size (and "
                "data.load_size) to a multiple of it, or choose a generator for this size "
                "(e.g. generator.name=unet with num_downs = log2 of the size)")
