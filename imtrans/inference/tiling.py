"""Size arithmetic for translating images of any size: padding to a multiple, and tiling.

A generator takes sides that are multiples of its ``size_multiple`` (4 for the ResNets,
``2 ** num_downs`` for a U-Net). Any other image is padded by reflection, translated, and
cropped back. An image too large to translate in one piece is cut into overlapping tiles whose
results are blended with linear ramps over the overlap, so memory stays bounded and no seam shows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["padded_size", "reflect_pad", "tile_starts", "translate_tiled"]


def padded_size(size: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is >= ``size`` (and >= ``multiple``).

    Example:
        >>> padded_size(300, 256), padded_size(256, 256), padded_size(5, 4)
        (512, 256, 8)
    """
    if size < 1 or multiple < 1:
        raise ValueError(f"size and multiple must be >= 1, got {size} and {multiple}")
    return max(multiple, -(-size // multiple) * multiple)


def reflect_pad(images: Tensor, height: int, width: int) -> Tensor:
    """Pad ``N x C x H x W`` images on the bottom and right to ``height x width`` by reflection.

    Reflection cannot add more than ``side - 1`` pixels at once, so small images are reflected
    repeatedly (a 1-pixel side is replicated) until they reach the size.
    """
    while images.shape[-2] < height or images.shape[-1] < width:
        h, w = images.shape[-2:]
        add_h = min(height - h, h - 1) if h > 1 else height - h
        add_w = min(width - w, w - 1) if w > 1 else width - w
        mode = "reflect" if h > 1 and w > 1 else "replicate"
        images = F.pad(images, (0, add_w, 0, add_h), mode=mode)
    return images


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of ``tile`` pixels start along a side of ``length``, overlapping by at
    least ``overlap`` pixels; the last tile ends exactly at ``length``.

    Example:
        >>> tile_starts(1000, 512, 64)
        [0, 448, 488]
        >>> tile_starts(400, 512, 64)
        [0]
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride < 1:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _ramp(length: int, overlap: int, device: torch.device) -> Tensor:
    """Blending weights along one side of a tile: rising over ``overlap`` pixels at each end."""
    index = torch.arange(length, device=device, dtype=torch.float32)
    edge = float(overlap + 1)
    return torch.minimum((index + 1) / edge, (length - index) / edge).clamp(max=1.0)


def translate_tiled(translate: Callable[[Tensor], Tensor], images: Tensor, tile: int,
                    overlap: int, device: torch.device) -> Tensor:
    """Translate ``images`` (on the CPU, padded to the generator's multiple) tile by tile.

    Each tile goes to ``device``, is translated, comes back and is added with its blending
    weights; only one tile at a time is on the device.

    Args:
        translate: The generator call, ``N x C x t x t`` to ``N x C' x t x t``.
        images: ``N x C x H x W``; ``H`` and ``W`` multiples of the generator's multiple.
        tile: Tile side (a multiple of the generator's multiple).
        overlap: Pixels shared by neighbouring tiles.
        device: Where the generator runs.
    """
    height, width = images.shape[-2:]
    out: Tensor | None = None
    total = torch.zeros(1, 1, height, width)
    for top in tile_starts(height, tile, overlap):
        for left in tile_starts(width, tile, overlap):
            patch = images[..., top:top + tile, left:left + tile]
            result = translate(patch.to(device)).float().cpu()
            th, tw = result.shape[-2:]
            weight = _ramp(th, overlap, torch.device("cpu"))[:, None] * _ramp(
                tw, overlap, torch.device("cpu"))[None, :]
            if out is None:
                out = torch.zeros(images.shape[0], result.shape[1], height, width)
            out[..., top:top + th, left:left + tw] += result * weight
            total[..., top:top + th, left:left + tw] += weight
    assert out is not None  # at least one tile
    return out.div_(total)  # in place: no second copy of a large output
