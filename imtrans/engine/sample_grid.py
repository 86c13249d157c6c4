"""Sample grids: one row per image, columns input | output | reconstruction (or target)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from imtrans.atomic import atomic_path

__all__ = ["save_grid"]


def save_grid(columns: list[Tensor], path: Path) -> None:
    """Write images in [-1, 1] as a PNG grid, each column one of ``columns`` (N x C x H x W).

    Columns with 1 channel are shown grey, with more than 3 only their first 3 channels.
    The file is written atomically (:func:`imtrans.atomic.atomic_path`), so a viewer never
    sees half of it.
    """
    # Imported here: torchvision.utils brings in torchvision's models and torch._dynamo, two
    # seconds that every command starting up would otherwise wait for.
    from torchvision.utils import save_image

    shown = [_as_rgb(c.detach().float().cpu()) for c in columns]
    rows = torch.stack(shown, dim=1).flatten(0, 1)  # image 0's columns, then image 1's...
    with atomic_path(path) as temporary:
        save_image((rows + 1) / 2, temporary, nrow=len(columns), padding=2, format="png")


def _as_rgb(images: Tensor) -> Tensor:
    channels = images.shape[1]
    if channels == 1:
        return images.expand(-1, 3, -1, -1)
    if channels == 2:
        return torch.cat([images, images[:, :1]], 1)
    return images[:, :3]
