"""Test images of a run in native units: inputs as the network reads them, targets as they are.

An evaluation in native units (see :mod:`imtrans.evaluation.native_units`) needs the inputs
normalised with the value range the generator trained with (the checkpoint's, which for an
``"auto"`` range came from the training split, not the test split) and the ground truth in
the units of its files, never clipped to a range. A dataset built for the test split reads
and resizes its files as usual; :class:`NativeTestTransform` takes the place of its transform
and gives each side in the form the evaluation needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from imtrans.data.value_range import ValueRange, to_network_tensor
from imtrans.errors import EvaluationError

__all__ = ["NativeTestTransform", "use_native_transform"]


class NativeTestTransform:
    """The test transform (resize only: test images are not cropped or flipped), giving each
    side of a call either normalised for the network or in native units.

    Args:
        resize: The dataset's deterministic resize (``ImageTransform.resize``).
        sides: Per side of a call (``image_a``, then ``image_b``), the value range that maps
            it onto [-1, 1], or None to keep it in native units (``float32``).
    """

    def __init__(self, resize: Any, sides: tuple[ValueRange | None, ...]) -> None:
        self.resize, self.sides = resize, sides

    def _side(self, image: np.ndarray, value_range: ValueRange | None) -> Tensor:
        resized = self.resize(image)
        if value_range is not None:
            return to_network_tensor(resized, value_range)
        return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1),
                                                     dtype=np.float32))

    def __call__(self, image_a: np.ndarray, image_b: np.ndarray | None = None, *,
                 ranges: Any = None) -> tuple[Tensor, Tensor | None]:
        """``(a, b)`` as :attr:`sides` say; the dataset's own ``ranges`` are not used (the
        ranges the generator trained with are)."""
        a = self._side(image_a, self.sides[0])
        b = None if image_b is None else self._side(image_b, self.sides[1])
        return a, b


def use_native_transform(dataset: Any, sides: tuple[ValueRange | None, ...]) -> None:
    """Make ``dataset`` (a folder dataset of :mod:`imtrans.data.folders`) give its items as
    :class:`NativeTestTransform` with ``sides`` does.

    Raises:
        EvaluationError: the dataset does not read through a resizing transform (a plugin
            dataset), so its images cannot be had in native units.
    """
    resize = getattr(getattr(dataset, "transform", None), "resize", None)
    if not callable(resize):
        raise EvaluationError(f"dataset {type(dataset).__name__} does not say how it resizes "
                              "its images, so they cannot be evaluated in native units")
    dataset.transform = NativeTestTransform(resize, sides)
