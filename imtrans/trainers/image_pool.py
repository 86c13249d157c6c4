"""The history of generated images CycleGAN shows its discriminators (Shrivastava et al., 2017).

Updating a discriminator with images from earlier generators, not only the latest, damps
oscillation. The pool lives on the images' device as one preallocated tensor, so querying it
never copies through the host; its random choices come from torch's CPU generator, so they are
captured and restored with the rest of the RNG state on resume.
"""

from __future__ import annotations

import torch
from torch import Tensor

from imtrans.errors import CheckpointError, InvalidArgumentError

__all__ = ["ImagePool"]


class ImagePool:
    """A buffer of up to ``size`` generated images.

    Each queried image is stored while the pool is filling. Once full, each image is, with
    probability 1/2, swapped with a random stored one (the stored one is returned), else
    returned as is. ``size = 0`` returns the query unchanged.

    Args:
        size: How many images to keep (50 in CycleGAN).

    Example:
        >>> pool = ImagePool(2)
        >>> pool.query(torch.zeros(1, 3, 4, 4)).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise InvalidArgumentError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.count = 0
        self.images: Tensor | None = None
        # The key of images restored from a checkpoint, until the first query has checked
        # them against what this run generates.
        self._unchecked: str | None = None

    def query(self, images: Tensor) -> Tensor:
        """Return a batch for the discriminator: ``images`` mixed with stored ones."""
        if self.size == 0:
            return images
        images = images.detach()
        if self.images is None:
            self.images = images.new_empty((self.size, *images.shape[1:]))
        elif self._unchecked is not None:
            self.images = self._checked(self.images, images)
        out = []
        # One CPU draw per image decides swap or pass-through; no device sync is involved.
        draws = torch.rand(images.shape[0]).tolist()
        slots = torch.randint(self.size, (images.shape[0],)).tolist()
        for image, draw, slot in zip(images, draws, slots, strict=True):
            if self.count < self.size:
                self.images[self.count] = image
                self.count += 1
                out.append(image)
            elif draw > 0.5:
                out.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                out.append(image)
        return torch.stack(out)

    def state_tensors(self, prefix: str) -> dict[str, Tensor]:
        """The stored images and their count, for a checkpoint."""
        tensors = {f"{prefix}.count": torch.tensor(self.count)}
        if self.images is not None and self.count:
            tensors[f"{prefix}.images"] = self.images[: self.count]
        return tensors

    def load_state_tensors(self, prefix: str, tensors: dict[str, Tensor], device: torch.device
                           ) -> None:
        """Restore what :meth:`state_tensors` saved.

        The stored images' channels and size are checked against the run's at the first
        :meth:`query`, the first time the pool sees what the generators make.

        Raises:
            CheckpointError: the count is not an integer from 0 to the pool size, or the
                images are not a floating-point ``count x C x H x W`` tensor (the message
                names the key).
        """
        count_key, images_key = f"{prefix}.count", f"{prefix}.images"
        saved = tensors.get(count_key, torch.tensor(0))
        if saved.numel() != 1 or saved.dtype.is_floating_point or saved.dtype.is_complex \
                or saved.dtype == torch.bool:
            raise CheckpointError(f"{count_key} is a {saved.dtype} tensor of shape "
                                  f"{tuple(saved.shape)}; expected one integer")
        count = int(saved.reshape(()))
        if not 0 <= count <= self.size:
            raise CheckpointError(f"{count_key} is {count}; expected an image count from 0 to "
                                  f"the pool size {self.size}")
        stored = tensors.get(images_key)
        rows = 0 if stored is None else stored.shape[0] if stored.dim() else 1
        if rows != count:
            held = "is missing" if stored is None else f"holds {rows} images"
            raise CheckpointError(f"{images_key} {held} but {count_key} is {count}")
        if stored is not None and count and (stored.dim() != 4 or stored.numel() == 0
                                             or not stored.dtype.is_floating_point):
            raise CheckpointError(f"{images_key} is a {stored.dtype} tensor of shape "
                                  f"{tuple(stored.shape)}; expected floating-point images of "
                                  f"shape ({count}, C, H, W)")
        self.count, self.images, self._unchecked = count, None, None
        if stored is not None and count:
            stored = stored.to(device)
            self.images = stored.new_empty((self.size, *stored.shape[1:]))
            self.images[:count] = stored
            self._unchecked = images_key

    def _checked(self, pool: Tensor, images: Tensor) -> Tensor:
        """Refuse restored images the run cannot mix with its own; give them the run's dtype."""
        key, self._unchecked = self._unchecked, None
        if pool.shape[1:] != images.shape[1:]:
            raise CheckpointError(
                f"{key}: the checkpoint's pool holds images of shape {tuple(pool.shape[1:])} "
                f"but this run generates {tuple(images.shape[1:])} (channels, height, width)")
        return pool.to(images.dtype)
