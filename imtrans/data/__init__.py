"""Datasets and image preprocessing for pix2pix and CycleGAN.

- :mod:`imtrans.data.images`: finding image files and decoding them to ``uint8`` arrays.
- :mod:`imtrans.data.transforms`: the official preprocessing modes (resize, crop, flip) and the
  conversion to tensors in [-1, 1].
- :mod:`imtrans.data.folders`: the ``aligned``, ``unaligned`` and ``single`` datasets.

Importing this package loads no images and does not import albumentations.
"""

from __future__ import annotations

from imtrans.data.folders import (
    AlignedDataset,
    SingleDataset,
    SkippedImageWarning,
    UnalignedDataset,
)
from imtrans.data.images import (
    IMAGE_EXTENSIONS,
    find_images,
    image_to_array,
    load_image,
    read_image,
)
from imtrans.data.transforms import (
    PREPROCESS_MODES,
    ImageTransform,
    Preprocess,
    build_transform,
    to_tensor,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "PREPROCESS_MODES",
    "AlignedDataset",
    "ImageTransform",
    "Preprocess",
    "SingleDataset",
    "SkippedImageWarning",
    "UnalignedDataset",
    "build_transform",
    "find_images",
    "image_to_array",
    "load_image",
    "read_image",
    "to_tensor",
]
