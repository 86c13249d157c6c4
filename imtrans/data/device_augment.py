"""Random crop and flip on the training device, with kornia.

With ``[data] augment = "device"`` the data loader only decodes and resizes each image to
``load_size``; the random ``crop_size`` crop and the horizontal flip run on the batch where it
trains (the GPU), which takes that work off the loading processes. A and B of a paired dataset
are stacked along the channels and cropped and flipped as one, so they get the identical
transform. The random parameters come from torch's global generator, which checkpoints capture,
so resumed runs stay exact.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import Tensor, nn

__all__ = ["DeviceAugment"]


class DeviceAugment:
    """Random ``crop_size`` crop and (optionally) horizontal flip of a batch's images.

    Args:
        crop_size: Side of the square crop.
        flip: Flip horizontally with probability 1/2.
        paired: Apply one transform to A and B together (aligned data); otherwise to each
            independently.

    Example:
        >>> augment = DeviceAugment(crop_size=4, flip=True, paired=True)
        >>> out = augment({"A": torch.zeros(2, 3, 6, 6), "B": torch.ones(2, 1, 6, 6)})
        >>> out["A"].shape, out["B"].shape
        (torch.Size([2, 3, 4, 4]), torch.Size([2, 1, 4, 4]))
    """

    def __init__(self, *, crop_size: int, flip: bool, paired: bool) -> None:
        steps: list[nn.Module] = [K.RandomCrop((crop_size, crop_size))]
        if flip:
            steps.append(K.RandomHorizontalFlip())
        self.random = nn.Sequential(*steps)
        self.center = K.CenterCrop((crop_size, crop_size))
        self.crop_size = crop_size
        self.flip = flip
        self.paired = paired

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch with ``A`` (and ``B``) randomly cropped and flipped."""
        return self._apply(self.random, batch)

    def center_crop(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch with ``A`` (and ``B``) cropped at the centre (for fixed sample grids)."""
        return self._apply(self.center, batch)

    def _apply(self, transform: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        images = {k: v for k, v in batch.items() if k in ("A", "B")}
        if self.paired and len(images) == 2:
            split = images["A"].shape[1]
            both = transform(torch.cat([images["A"], images["B"]], dim=1))
            return batch | {"A": both[:, :split], "B": both[:, split:]}
        return batch | {k: transform(v) for k, v in images.items()}
