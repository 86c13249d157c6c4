"""The image pool's planned query equals the reference code's image-by-image loop, bit for bit,
and a prepared plan applied inside a compiled function gives the same images."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from imtrans.trainers.image_pool import ImagePool


class LoopPool:
    """The reference code's pool: one image at a time, swapped with probability 1/2 when full."""

    def __init__(self, size: int) -> None:
        self.size, self.count, self.images = size, 0, None

    def query(self, images: Tensor) -> Tensor:
        if self.images is None:
            self.images = images.new_empty((self.size, *images.shape[1:]))
        out = []
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


@pytest.mark.parametrize(("size", "batch"), [(1, 1), (3, 2), (4, 5), (2, 7), (50, 1), (6, 4)])
def test_planned_query_equals_the_loop(size: int, batch: int) -> None:
    reference, pool = LoopPool(size), ImagePool(size)
    images = torch.randn(12, batch, 2, 3, 3)
    torch.manual_seed(0)
    expected = [reference.query(x) for x in images]
    torch.manual_seed(0)
    got = [pool.query(x) for x in images]
    for want, have in zip(expected, got, strict=True):
        assert torch.equal(want, have)
    assert pool.count == reference.count
    assert torch.equal(pool.images[:pool.count], reference.images[:reference.count])


def test_a_prepared_plan_is_applied_inside_a_compiled_function() -> None:
    reference, pool = LoopPool(3), ImagePool(3)
    images = torch.randn(8, 2, 2, 4, 4)
    torch.manual_seed(1)
    expected = [reference.query(x) for x in images]
    compiled = torch.compile(pool.query, fullgraph=True, backend="eager")
    torch.manual_seed(1)
    got = [pool.query(images[0])]  # the first query learns the size, uncompiled
    for x in images[1:]:
        pool.prepare(x.device)
        got.append(compiled(x))
    for want, have in zip(expected, got, strict=True):
        assert torch.equal(want, have)
