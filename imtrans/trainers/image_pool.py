"""The history of generated images CycleGAN shows its discriminators (Shrivastava et al., 2017).

Updating a discriminator with images from earlier generators, not only the latest, damps
oscillation. The pool lives on the images' device as one preallocated tensor, so querying it
never copies through the host; its random choices come from torch's CPU generator, so they are
captured and restored with the rest of the RNG state on resume.

A query has two halves. The host half (:meth:`ImagePool.plan`) draws the random choices and
decides, from the pool's fill count alone, which image goes where: index tensors of a fixed
size. The device half applies them with gathers and one ``index_copy_``, with no host
decision, so a compiled training step (``speed.compile = "step"``) can take it whole: the
engine plans every pool before the compiled step (:meth:`ImagePool.prepare`) and the step's
query applies the prepared plan. Outside a compiled step a query plans for itself, at the
same point in the random stream as ever.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from imtrans.errors import CheckpointError, InvalidArgumentError

__all__ = ["ImagePool", "PoolPlan", "in_query_order"]

# Numbers the uncompiled queries in order, so pools are planned in the order a step queries
# them and draw from the random stream as the uncompiled step does.
_queries = itertools.count()


@dataclass(frozen=True)
class PoolPlan:
    """Where each image of one query comes from and goes to (index tensors of the batch size).

    Attributes:
        from_pool: Per output image, whether it is a stored image (else a queried one).
        pool_index: Per output image, the stored slot it is taken from (when ``from_pool``).
        image_index: Per output image, the queried image it is (when not ``from_pool``): its
            own, or an earlier image of the same query that took the slot it drew.
        write_slot: Per queried image, the slot it is stored in; images not stored, and those
            overwritten later in the same query, go to the scratch slot past the end.
    """

    from_pool: Tensor
    pool_index: Tensor
    image_index: Tensor
    write_slot: Tensor

    def to(self, device: torch.device) -> PoolPlan:
        """The plan on ``device`` (from pinned memory without blocking, on a GPU)."""
        if device.type == "cpu":
            return self
        return PoolPlan(*(t.pin_memory().to(device, non_blocking=True)
                          for t in (self.from_pool, self.pool_index, self.image_index,
                                    self.write_slot)))


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
        # size + 1 rows: the last is scratch, where images that are not stored are written, so
        # every query writes the same number of rows.
        self.images: Tensor | None = None
        # The key of images restored from a checkpoint, until the first query has checked
        # them against what this run generates.
        self._unchecked: str | None = None
        # Images per query, learnt from the first one: what prepare() plans for.
        self.query_size: int | None = None
        self.last_query = -1
        self._prepared: PoolPlan | None = None

    def plan(self, n: int) -> PoolPlan:
        """Draw the choices for a query of ``n`` images and advance the fill count (host only:
        no tensor values are read)."""
        # One CPU draw per image decides swap or pass-through, as the reference code does.
        draws = torch.rand(n).tolist()
        slots = torch.randint(self.size, (n,)).tolist()
        from_pool, pool_index, image_index, write_slot = [], [], [], []
        written_by: dict[int, int] = {}  # slot -> the image of this query stored there
        for i, (draw, slot) in enumerate(zip(draws, slots, strict=True)):
            if self.count < self.size:
                target, source = self.count, None
                self.count += 1
            elif draw > 0.5:
                target, source = slot, slot
            else:
                target, source = None, None
            if source is not None and source in written_by:  # stored earlier in this query
                from_pool.append(False)
                image_index.append(written_by[source])
            else:
                from_pool.append(source is not None)
                image_index.append(i)
            pool_index.append(0 if source is None else source)
            write_slot.append(self.size)
            if target is not None:
                if target in written_by:  # only the last image stored in a slot stays there
                    write_slot[written_by[target]] = self.size
                written_by[target] = i
                write_slot[i] = target
        return PoolPlan(torch.tensor(from_pool), torch.tensor(pool_index),
                        torch.tensor(image_index), torch.tensor(write_slot))

    def prepare(self, device: torch.device) -> None:
        """Plan the next query before a compiled step, which applies the plan as it stands.

        Does nothing before the first query, which learns the query size (the engine runs
        the first step uncompiled), or when the pool is off.
        """
        if self.size == 0 or self.query_size is None:
            return
        plan = self.plan(self.query_size).to(device)
        if self._prepared is None:
            self._prepared = plan
            return
        for kept, new in zip(vars(self._prepared).values(), vars(plan).values(), strict=True):
            kept.copy_(new, non_blocking=True)  # the same tensors: the compiled step reads them

    def query(self, images: Tensor) -> Tensor:
        """Return a batch for the discriminator: ``images`` mixed with stored ones."""
        if self.size == 0:
            return images
        images = images.detach()
        if torch.compiler.is_compiling():
            plan = self._prepared
            assert plan is not None, "a compiled step runs after an uncompiled first one"
        else:
            self._allocate(images)
            self.query_size, self.last_query = images.shape[0], next(_queries)
            plan = self.plan(images.shape[0]).to(images.device)
        assert self.images is not None
        mask = plan.from_pool.view(-1, *([1] * (images.dim() - 1)))
        out = torch.where(mask, self.images.index_select(0, plan.pool_index),
                          images.index_select(0, plan.image_index))
        self.images.index_copy_(0, plan.write_slot, images)
        return out

    def _allocate(self, images: Tensor) -> None:
        """Make the buffer at the first query, or check and convert restored images."""
        if self.images is None:
            self.images = images.new_zeros((self.size + 1, *images.shape[1:]))
        elif self._unchecked is not None:
            self.images = self._checked(self.images, images)

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
        self._prepared = None
        if stored is not None and count:
            stored = stored.to(device)
            self.images = stored.new_zeros((self.size + 1, *stored.shape[1:]))
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


def in_query_order(pools: list[ImagePool]) -> list[ImagePool]:
    """``pools`` in the order an uncompiled step last queried them (what to prepare first)."""
    return sorted(pools, key=lambda pool: pool.last_query)
