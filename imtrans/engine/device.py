"""Getting ready to train: the device a recipe names, and the seeds."""

from __future__ import annotations

import random

import torch

from imtrans.engine.observer import TrainingObserver
from imtrans.errors import RecipeError

__all__ = ["seed_everything", "select_device"]


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
