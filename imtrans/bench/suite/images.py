"""JPEG folders for the GPU suite, drawn procedurally: no dataset to fetch, the same on every
machine.

Each image is a colour gradient with a few ellipses and rectangles, from a seeded NumPy
generator, written by Pillow at quality 90 (as the pix2pix and CycleGAN sets are JPEGs). The
suite then trains from these folders through the real data pipeline, decoding included.

Example:
    >>> import tempfile
    >>> folders = make_image_folders(Path(tempfile.mkdtemp()), size=32, count=2, test=1)
    >>> sorted(p.name for p in (folders.paired / "train").iterdir())
    ['00000.jpg', '00001.jpg']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["ImageFolders", "make_image_folders"]

#: Pillow's JPEG quality for every generated file.
JPEG_QUALITY = 90


@dataclass(frozen=True)
class ImageFolders:
    """Where the generated images are.

    Attributes:
        paired: The ``aligned`` layout: ``train/`` and ``test/``, A | B side by side.
        unpaired: The ``unaligned`` layout: ``trainA/``, ``trainB/``, ``testA/``, ``testB/``.
    """

    paired: Path
    unpaired: Path


def make_image_folders(root: Path, *, size: int, count: int, test: int = 0,
                       seed: int = 0) -> ImageFolders:
    """Write ``count`` training and ``test`` test images of ``size`` px into both layouts.

    Args:
        root: An empty (or new) folder.
        size: The side of each square image (a paired file is ``2 * size`` wide).
        count: Training images per folder (pairs for ``paired``).
        test: Test images per folder.
        seed: Seeds the drawing.

    Returns:
        The two dataset folders under ``root``.
    """
    rng = np.random.default_rng(seed)
    folders = ImageFolders(root / "paired", root / "unpaired")
    for split, number in (("train", count), ("test", test)):
        if number == 0:
            continue
        for folder in (folders.paired / split, folders.unpaired / f"{split}A",
                       folders.unpaired / f"{split}B"):
            folder.mkdir(parents=True, exist_ok=True)
        for index in range(number):
            name = f"{index:05d}.jpg"
            photo, labels = _scene(rng, size)
            pair = Image.new("RGB", (2 * size, size))
            pair.paste(photo, (0, 0))
            pair.paste(labels, (size, 0))
            pair.save(folders.paired / split / name, quality=JPEG_QUALITY)
            photo.save(folders.unpaired / f"{split}A" / name, quality=JPEG_QUALITY)
            _scene(rng, size)[1].save(folders.unpaired / f"{split}B" / name,
                                      quality=JPEG_QUALITY)
    return folders


def _scene(rng: np.random.Generator, size: int) -> tuple[Image.Image, Image.Image]:
    """A "photo" (gradient, shapes and noise) and its flat "label map" (the same shapes)."""
    ramp = np.linspace(0.0, 1.0, size)
    start, end = rng.random(3), rng.random(3)
    horizontal = rng.random() < 0.5
    t = ramp[None, :, None] if horizontal else ramp[:, None, None]
    gradient = start + (end - start) * t
    photo = Image.fromarray(np.broadcast_to(gradient * 255, (size, size, 3)).astype(np.uint8))
    labels = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw_photo, draw_labels = ImageDraw.Draw(photo), ImageDraw.Draw(labels)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = (int(v) for v in rng.integers(0, size - 2, 2))
        x1, y1 = x0 + int(rng.integers(2, size // 2 + 3)), y0 + int(rng.integers(2, size // 2 + 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        label = tuple(int(c) for c in rng.integers(0, 256, 3))
        round_shape = rng.random() < 0.5
        for draw, fill in ((draw_photo, colour), (draw_labels, label)):
            (draw.ellipse if round_shape else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    noise = rng.normal(0.0, 8.0, (size, size, 3))
    noisy = np.clip(np.asarray(photo, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(noisy), labels
