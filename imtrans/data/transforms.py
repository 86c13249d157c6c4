"""The pix2pix / CycleGAN preprocessing modes, on the CPU with albumentations.

The modes follow the official implementation (``data/base_dataset.py`` of
pytorch-CycleGAN-and-pix2pix):

- ``resize_and_crop``: resize to ``load_size x load_size``, then a random ``crop_size`` crop.
- ``crop``: a random ``crop_size`` crop of the image as it is (``load_size`` is unused).
- ``scale_width``: resize so the width is ``load_size``, keeping the aspect ratio, with the
  height raised to at least ``crop_size``.
- ``scale_width_and_crop``: ``scale_width``, then a random ``crop_size`` crop.
- ``none``: keep the size, rounded to the nearest multiple of 4 by a resize.

Then a horizontal flip with probability 0.5 when ``flip`` is set, and the conversion to a
``float32`` ``C x H x W`` tensor in [-1, 1].

Images are ``H x W x C`` arrays of ``uint8`` (8-bit files) or, for scientific images, of
``uint16``, ``int16`` or ``float32`` in native units (:mod:`imtrans.data.native_images`); the
latter are resized as ``float32`` (no rounding, no clipping) and mapped to [-1, 1] by their
domain's :class:`~imtrans.data.value_range.ValueRange`.

Resizes (all of them: ``resize_and_crop``, ``scale_width`` and the rounding of ``none``) are
bicubic, with the filter ``resize_filter`` names:

- ``pil_bicubic`` (the default): Pillow's ``Image.resize(..., BICUBIC)``, the very pixels of the
  official code, which resizes PIL images with torchvision's ``Resize(..., BICUBIC)``
  (a = -0.5, antialiased when downscaling). One channel is an ``L`` image, three an ``RGB``
  one; other counts are resized channel by channel as ``L`` images, which gives the same
  values (the 8-bit resampling treats each band alike; no alpha premultiplication).
- ``opencv_cubic``: OpenCV's ``cv2.INTER_CUBIC`` through albumentations (a = -0.75, a little
  sharper, no antialiasing), the behaviour before the filter was a choice.

Randomness comes from torch's global generator: every call draws one seed from it and hands it
to albumentations. So ``torch.manual_seed`` makes the augmentation reproducible, and DataLoader
workers (which torch seeds differently) do not repeat each other's crops.
"""

from __future__ import annotations

import os
import random
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor

from imtrans.data.value_range import ValueRange, dtype_range, to_network_tensor
from imtrans.errors import DataError, InvalidArgumentError

if TYPE_CHECKING:
    import albumentations

__all__ = [
    "DEFAULT_RESIZE_FILTER",
    "PREPROCESS_MODES",
    "RESIZE_FILTERS",
    "ImageTransform",
    "Preprocess",
    "ResizeFilter",
    "build_transform",
    "to_tensor",
]

#: The preprocessing modes of the official code.
Preprocess = Literal["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"]
PREPROCESS_MODES: tuple[str, ...] = get_args(Preprocess)

#: The bicubic filters resizes can use (see the module docstring).
ResizeFilter = Literal["pil_bicubic", "opencv_cubic"]
RESIZE_FILTERS: tuple[str, ...] = get_args(ResizeFilter)
#: The official code's filter: its pixels, bit for bit.
DEFAULT_RESIZE_FILTER: ResizeFilter = "pil_bicubic"

_CROPPING = ("resize_and_crop", "crop", "scale_width_and_crop")
# The official code rounds sizes to this multiple in mode "none" (U-Net/ResNet downsampling).
_SIZE_BASE = 4
_INTER_CUBIC = 2  # cv2.INTER_CUBIC, spelled out so that importing this module loads no cv2.


def _albumentations() -> ModuleType:
    # Imported on first use: albumentations takes seconds to import and, unless told not to,
    # asks PyPI for a newer version each time it is imported (in every DataLoader worker too).
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


#: The sample types the transforms take (see the module docstring).
SAMPLE_TYPES = (np.uint8, np.uint16, np.int16, np.float32)


def _pil_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` (``H x W x C``) resized by Pillow's BICUBIC, as the official code.

    ``uint8`` images are resized as 8-bit ``L``/``RGB`` images (the official pixels); other
    types channel by channel as ``float32`` ``F`` images, which keeps every level."""
    from PIL import Image

    if image.dtype != np.uint8:
        return np.stack([np.array(Image.fromarray(np.ascontiguousarray(image[:, :, c],
                                                                       dtype=np.float32))
                                  .resize((width, height), Image.Resampling.BICUBIC))
                         for c in range(image.shape[2])], axis=2)

    def resized(array: np.ndarray) -> np.ndarray:
        # Pillow sizes are (width, height). np.array, not np.asarray: a writable copy
        # (arrays viewing a Pillow image are read-only, and torch.from_numpy warns on those).
        picture = Image.fromarray(np.ascontiguousarray(array))
        return np.array(picture.resize((width, height), Image.Resampling.BICUBIC))

    if image.shape[2] == 3:
        return resized(image)  # an "RGB" image
    # One "L" image per channel otherwise: any channel count, and no alpha premultiplication
    # (Pillow resizes "RGBA" as "RGBa", which would mix alpha into the colour channels).
    return np.stack([resized(image[:, :, c]) for c in range(image.shape[2])], axis=2)


def _as_sample(image: np.ndarray) -> np.ndarray:
    return image if image.dtype in (np.uint8, np.float32) else image.astype(np.float32)


def _opencv_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` resized by OpenCV's INTER_CUBIC through albumentations (the old filter)."""
    from albumentations.augmentations.geometric.functional import resize

    if image.dtype != np.uint8:
        image = image.astype(np.float32)
    # The functional form keeps a trailing channel axis of 1 that cv2.resize would drop.
    resized: np.ndarray = resize(image, (height, width), _INTER_CUBIC)
    return resized


_RESIZERS = {"pil_bicubic": _pil_resize, "opencv_cubic": _opencv_resize}


def _check_resize_filter(resize_filter: object) -> None:
    if resize_filter not in RESIZE_FILTERS:
        raise InvalidArgumentError(
            f"resize_filter must be one of {', '.join(map(repr, RESIZE_FILTERS))}, "
            f"got {resize_filter!r}"
        )


def to_tensor(image: np.ndarray) -> Tensor:
    """Turn an ``H x W x C`` ``uint8`` array into a ``float32`` ``C x H x W`` tensor in [-1, 1].

    Args:
        image: The array (values 0..255).

    Returns:
        ``image / 127.5 - 1`` as a contiguous tensor.

    Example:
        >>> to_tensor(np.full((2, 2, 1), 255, np.uint8)).flatten().tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    # One conversion that always copies: arrays straight from Pillow are read-only.
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    return torch.from_numpy(chw).div_(127.5).sub_(1.0)


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")


class ImageTransform:
    """A preprocessing pipeline; build it with :func:`build_transform`.

    Calling it with ``(image_a, image_b=None)`` (``H x W x C`` ``uint8`` arrays) returns
    ``(tensor_a, tensor_b)``, ``tensor_b`` being ``None`` when ``image_b`` is. Instances are
    picklable, so they work in DataLoader workers under any start method.
    """

    def __init__(
        self,
        preprocess: Preprocess,
        load_size: int,
        crop_size: int,
        flip: bool,
        paired: bool,
        *,
        resize_filter: ResizeFilter = DEFAULT_RESIZE_FILTER,
    ) -> None:
        _check_resize_filter(resize_filter)
        self.preprocess = preprocess
        self.load_size = load_size
        self.crop_size = crop_size
        self.flip = flip
        self.paired = paired
        self.resize_filter = resize_filter
        self._random = self._build_random_part()

    def __repr__(self) -> str:
        return (
            f"ImageTransform(preprocess={self.preprocess!r}, load_size={self.load_size}, "
            f"crop_size={self.crop_size}, flip={self.flip}, paired={self.paired}, "
            f"resize_filter={self.resize_filter!r})"
        )

    def _build_random_part(self) -> albumentations.Compose | None:
        alb = _albumentations()
        steps: list[Any] = []
        if self.preprocess in _CROPPING:
            steps.append(alb.RandomCrop(height=self.crop_size, width=self.crop_size))
        if self.flip:
            steps.append(alb.HorizontalFlip(p=0.5))
        if not steps:
            return None
        # One Compose call transforms both images with one draw of the random parameters;
        # images of different channel counts are fine (crop and flip are per pixel column).
        targets = {"image_b": "image"} if self.paired else {}
        return alb.Compose(steps, additional_targets=targets)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Return the ``(height, width)`` an image of the given size is resized to before cropping.

        Example:
            >>> build_transform("scale_width", 256, 256, False, False).target_size(100, 200)
            (256, 256)
        """
        load, crop = self.load_size, self.crop_size
        if self.preprocess == "resize_and_crop":
            return load, load
        if self.preprocess in ("scale_width", "scale_width_and_crop"):
            if width == load and height >= crop:
                return height, width
            return int(max(load * height / width, crop)), load
        if self.preprocess == "none":
            return (
                max(_SIZE_BASE, round(height / _SIZE_BASE) * _SIZE_BASE),
                max(_SIZE_BASE, round(width / _SIZE_BASE) * _SIZE_BASE),
            )
        return height, width

    def resize(self, image: np.ndarray) -> np.ndarray:
        """The deterministic first part of the transform: ``image`` resized to
        :meth:`target_size` with :attr:`resize_filter`, still an ``H x W x C`` array (the same
        array when its size is already the target; ``float32`` when a non-8-bit image was
        resized).

        Example:
            >>> t = build_transform("resize_and_crop", 8, 8, False, False)
            >>> t.resize(np.zeros((4, 6, 2), np.uint8)).shape
            (8, 8, 2)
        """
        height, width = self.target_size(*image.shape[:2])
        if (height, width) == image.shape[:2]:
            return image
        return _RESIZERS[self.resize_filter](image, height, width)

    def _check(self, name: str, image: np.ndarray) -> None:
        if (not isinstance(image, np.ndarray) or image.ndim != 3
                or image.dtype not in SAMPLE_TYPES):
            got = (
                f"{image.dtype} array of shape {image.shape}"
                if isinstance(image, np.ndarray)
                else type(image).__name__
            )
            raise InvalidArgumentError(f"{name} must be an H x W x C array of uint8, uint16, "
                                       f"int16 or float32, got {got}")

    def __call__(
        self, image_a: np.ndarray, image_b: np.ndarray | None = None, *,
        ranges: tuple[ValueRange | None, ValueRange | None] = (None, None),
    ) -> tuple[Tensor, Tensor | None]:
        """Transform one image, or a pair (see :func:`build_transform`).

        ``ranges`` are the value ranges of ``image_a`` and ``image_b``; ``None`` is the sample
        type's full range (0..255 for 8-bit images: the tensors of the official code).
        """
        self._check("image_a", image_a)
        if image_b is not None:
            self._check("image_b", image_b)
        if not self.paired and image_b is not None:
            return (self(image_a, ranges=(ranges[0], None))[0],
                    self(image_b, ranges=(ranges[1], None))[0])
        if image_b is not None and image_a.shape[:2] != image_b.shape[:2]:
            raise InvalidArgumentError(
                "a paired transform needs images of the same size, got "
                f"{image_a.shape[0]}x{image_a.shape[1]} and {image_b.shape[0]}x{image_b.shape[1]}"
            )
        # The full range of the file's type, taken before the type changes to float32 below.
        ranges = (ranges[0] or dtype_range(image_a.dtype),
                  None if image_b is None else ranges[1] or dtype_range(image_b.dtype))
        # Non-8-bit images are cropped and flipped as float32 (exact for 16-bit integers):
        # the one type besides uint8 that every albumentations transform takes.
        image_a = _as_sample(self.resize(image_a))
        if image_b is not None:
            image_b = _as_sample(self.resize(image_b))
        if self.preprocess in _CROPPING:
            height, width = image_a.shape[:2]
            if height < self.crop_size or width < self.crop_size:
                raise DataError(
                    f"an image of {height}x{width} (after resizing) is smaller than "
                    f"crop_size {self.crop_size}; use a smaller crop_size or a resizing "
                    "preprocess such as 'resize_and_crop'"
                )
        if self._random is not None:
            # Seeding from torch's generator on every call: see the module docstring.
            seed = int(torch.randint(0, 2**31 - 1, ()))
            self._random.set_random_state(np.random.default_rng(seed), random.Random(seed))
            inputs = {"image": image_a}
            if image_b is not None:
                inputs["image_b"] = image_b
            out = self._random(**inputs)
            image_a, image_b = out["image"], out.get("image_b")
        return (to_network_tensor(image_a, ranges[0]),
                None if image_b is None else to_network_tensor(image_b, ranges[1]))


def build_transform(
    preprocess: Preprocess,
    load_size: int,
    crop_size: int,
    flip: bool,
    paired: bool,
    *,
    resize_filter: ResizeFilter = DEFAULT_RESIZE_FILTER,
) -> ImageTransform:
    """Build the preprocessing of the official pix2pix / CycleGAN code.

    Args:
        preprocess: One of ``resize_and_crop``, ``crop``, ``scale_width``,
            ``scale_width_and_crop``, ``none`` (see the module docstring).
        load_size: The size images are resized to (the width for the ``scale_width`` modes).
        crop_size: The side of the random square crop (the minimum height for
            ``scale_width``).
        flip: Flip horizontally with probability 0.5.
        paired: Give both images of a call the identical random crop and flip (pix2pix);
            otherwise each image is transformed on its own (CycleGAN).
        resize_filter: ``pil_bicubic`` (Pillow's BICUBIC, the official code's pixels) or
            ``opencv_cubic`` (``cv2.INTER_CUBIC``, the previous behaviour); see the module
            docstring.

    Returns:
        A picklable callable ``(image_a, image_b=None) -> (tensor_a, tensor_b)`` taking
        ``H x W x C`` ``uint8`` arrays and returning ``float32`` ``C x H x W`` tensors in
        [-1, 1]. Calling it raises :class:`~imtrans.errors.DataError` when an image is smaller
        than ``crop_size`` in a cropping mode.

    Raises:
        InvalidArgumentError: an unknown ``preprocess``, a size that is not a positive
            integer, ``crop_size > load_size`` in ``resize_and_crop`` or
            ``scale_width_and_crop`` (where the crop is taken from a ``load_size`` image), or
            an unknown ``resize_filter``.

    Example:
        >>> t = build_transform("resize_and_crop", 286, 256, flip=True, paired=True)
        >>> a, b = t(np.zeros((300, 400, 3), np.uint8), np.zeros((300, 400, 1), np.uint8))
        >>> tuple(a.shape), tuple(b.shape)
        ((3, 256, 256), (1, 256, 256))
    """
    if preprocess not in PREPROCESS_MODES:
        raise InvalidArgumentError(
            f"preprocess must be one of {', '.join(map(repr, PREPROCESS_MODES))}, "
            f"got {preprocess!r}"
        )
    _positive("load_size", load_size)
    _positive("crop_size", crop_size)
    _check_resize_filter(resize_filter)
    if preprocess in ("resize_and_crop", "scale_width_and_crop") and crop_size > load_size:
        raise InvalidArgumentError(
            f"crop_size ({crop_size}) must not exceed load_size ({load_size}) with "
            f"preprocess={preprocess!r}: the crop is taken from a {load_size}-pixel image"
        )
    return ImageTransform(
        preprocess, load_size, crop_size, bool(flip), bool(paired), resize_filter=resize_filter
    )
