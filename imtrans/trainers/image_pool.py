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

    def query(self, images: Tensor) -> Tensor:
        """Return a batch for the discriminator: ``images`` mixed with stored ones."""
        if self.size == 0:
            return images
        images = images.detach()
        if self.images is None:
            self.images = images.new_empty((self.size, *images.shape[1:]))
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

        Raises:
            CheckpointError: the saved pool is larger than this pool.
        """
        count = int(tensors.get(f"{prefix}.count", torch.tensor(0)))
        if count > self.size:
            raise CheckpointError(f"{prefix}: checkpoint holds {count} images, pool size is "
                                  f"{self.size}")
        self.count = count
        self.images = None
        if count:
            stored = tensors[f"{prefix}.images"].to(device)
            self.images = stored.new_empty((self.size, *stored.shape[1:]))
            self.images[:count] = stored
