"""A dataset's images held on the training device as ``uint8``, cropped and flipped there.

When the images fit in GPU memory, decoding them once and keeping them there takes the loading
processes out of training: each step gathers its batch from device memory, with the random
crop and flip applied by the same gather, and never waits for a worker or a host copy.

How it stays faithful and exact:

- Every file is decoded once and resized as the streaming path resizes it (bicubic, to
  ``load_size``, with the dataset's ``resize_filter``: the resize is the dataset's own
  ``load_resized``), so a cached image is the very ``uint8`` array the loading processes would
  crop; ``x / 127.5 - 1`` then gives the same floats bit for bit.
- An item's entries, crop offsets and flips are drawn from a generator seeded by the item's
  seed alone (the :class:`~imtrans.data.sampler.EpochBatches` seed), on the host, once per epoch.
  A resumed run draws the same ones, whatever happened before.
- A paired dataset's A and B come from one table entry and share one crop and flip; unpaired
  domains are separate tables, each with its own.
- The step's batch is a single indexing operation on tensors already on the device: no host
  synchronisation and no copy per step (the epoch's plan is copied once per epoch).

The random crops are not those the streaming path (albumentations) draws for the same seed: the
two paths give the same distribution of crops, not the same sequence.

The dataset must offer the cache view of :mod:`imtrans.data.folders`: ``cache_tables``,
``table_length``, ``entry_path``, ``load_resized`` and ``item_positions`` (see
:func:`imtrans.core.contracts.is_cacheable`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from imtrans.core.contracts import CacheableDataset
from imtrans.data.workers import worker_init

__all__ = ["DeviceImageCache", "EpochPlan", "cache_bytes"]


def _element_bytes(dataset: CacheableDataset) -> int:
    """1 for datasets that cache ``uint8`` images, 4 for those that cache ``float32`` ones
    already in [-1, 1] (16-bit, float and other value ranges: their ``cache_element_bytes``)."""
    return int(getattr(dataset, "cache_element_bytes", 1))


def cache_bytes(dataset: CacheableDataset, load_size: int) -> int:
    """Device memory the cache of ``dataset`` at ``load_size`` x ``load_size`` takes."""
    return _element_bytes(dataset) * sum(
        dataset.table_length(t) * sum(keys.values()) * load_size * load_size
        for t, keys in enumerate(dataset.cache_tables()))


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's draws, on the device: per item and table, (entry, top, left, flip).

    Attributes:
        draws: ``items x tables x 4`` int64 tensor on the cache's device.
        bounds: ``(first, end)`` rows of each batch, in order.
    """

    draws: Tensor
    bounds: list[tuple[int, int]]


class _Entries(Dataset[tuple[int, int, dict[str, np.ndarray], str]]):
    """Every entry of every table, decoded and resized (for loading processes)."""

    def __init__(self, dataset: CacheableDataset) -> None:
        self.dataset = dataset
        self.entries = [(t, p) for t in range(len(dataset.cache_tables()))
                        for p in range(dataset.table_length(t))]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[int, int, dict[str, np.ndarray], str]:
        table, position = self.entries[index]
        arrays, path = self.dataset.load_resized(table, position)
        return table, position, arrays, str(path)


def _keep_arrays(item: Any) -> Any:
    """A collate function that leaves items as they are (numpy arrays, not tensors)."""
    return item


class DeviceImageCache:
    """The images of a dataset on ``device``; see the module docstring.

    Build it with :meth:`fill`; :meth:`plan` an epoch, then take its batches with
    :meth:`batch`.

    Attributes:
        tables: Per table, its keys' images as ``N x C x H x W`` tensors: ``uint8`` for 8-bit
            data, ``float32`` already in [-1, 1] for other types and value ranges.
        crop_size: Side of the random square crop.
        flip: Flip horizontally with probability 1/2.
        skipped: How many files could not be used (the next usable one stands in for each).
    """

    def __init__(self, dataset: CacheableDataset, tables: list[dict[str, Tensor]], *,
                 crop_size: int, flip: bool, skipped: list[str]) -> None:
        self.dataset = dataset
        self.tables = tables
        self.crop_size = crop_size
        self.flip = flip
        self.skipped = skipped
        self.device = next(iter(tables[0].values())).device
        self._offsets = torch.arange(crop_size, device=self.device)

    @property
    def nbytes(self) -> int:
        """Device memory the cached images take."""
        return sum(t.numel() * t.element_size() for table in self.tables
                   for t in table.values())

    @classmethod
    def fill(cls, dataset: CacheableDataset, device: torch.device, *, load_size: int,
             crop_size: int, flip: bool, num_workers: int = 0,
             progress: Callable[[int, int], None] | None = None) -> DeviceImageCache:
        """Decode every file of ``dataset`` once and keep the images on ``device``.

        Args:
            dataset: A dataset offering the cache view, resizing to ``load_size``.
            device: Where the images live (and batches are made).
            load_size: The side every resized image has.
            crop_size: Side of the random crop each batch takes (<= ``load_size``).
            flip: Random horizontal flips.
            num_workers: Loading processes that decode in parallel (0: this process).
            progress: Called as ``progress(done, total)`` while decoding.

        Raises:
            DataError: a table has no usable file at all (from the dataset).
        """
        entries = _Entries(dataset)
        # Filled on the host, then moved in one copy per key: one image at a time would
        # make thousands of small copies.
        dtype = torch.uint8 if _element_bytes(dataset) == 1 else torch.float32
        hosts = [{key: torch.empty(dataset.table_length(t), channels, load_size, load_size,
                                   dtype=dtype)
                  for key, channels in keys.items()}
                 for t, keys in enumerate(dataset.cache_tables())]
        # A generator of its own: the workers' base seed is not drawn from the global RNG,
        # so the networks built next start from the same weights with or without the cache.
        loader = DataLoader(entries, batch_size=None, num_workers=num_workers,
                            collate_fn=_keep_arrays, generator=torch.Generator(),
                            worker_init_fn=worker_init())
        skipped: set[str] = set()
        for done, (table, position, arrays, path) in enumerate(loader, 1):
            for key, array in arrays.items():
                hosts[table][key][position] = torch.from_numpy(array).permute(2, 0, 1)
            wanted = str(dataset.entry_path(table, position))
            if wanted != path:  # the dataset used the next usable file instead
                skipped.add(wanted)
            if progress is not None:
                progress(done, len(entries))
        tables = [{k: v.to(device) for k, v in host.items()} for host in hosts]
        return cls(dataset, tables, crop_size=crop_size, flip=flip, skipped=sorted(skipped))

    def plan(self, batches: list[list[tuple[int, int]]], *, centre: bool = False) -> EpochPlan:
        """Draw the entries, crops and flips of ``batches`` of ``(index, seed)`` items.

        Runs on the host, once per epoch; the result is copied to the device in one go.

        Args:
            batches: Lists of ``(index, seed)`` items, as the sampler yields them.
            centre: Take every crop at the centre, unflipped (the sample grids' inputs).
        """
        height = next(iter(self.tables[0].values())).shape[-2]
        width = next(iter(self.tables[0].values())).shape[-1]
        rows: list[list[list[int]]] = []
        bounds: list[tuple[int, int]] = []
        for batch in batches:
            bounds.append((len(rows), len(rows) + len(batch)))
            for index, seed in batch:
                generator = torch.Generator().manual_seed(seed)
                positions = self.dataset.item_positions(index, generator)
                rows.append([[position, *(self._centre_crop(height, width) if centre
                                          else self._draw_crop(height, width, generator))]
                             for position in positions])
        draws = torch.tensor(rows, dtype=torch.int64).reshape(len(rows), len(self.tables), 4)
        return EpochPlan(draws.to(self.device), bounds)

    def _centre_crop(self, height: int, width: int) -> list[int]:
        return [(height - self.crop_size) // 2, (width - self.crop_size) // 2, 0]

    def _draw_crop(self, height: int, width: int, generator: torch.Generator) -> list[int]:
        top = int(torch.randint(height - self.crop_size + 1, (), generator=generator))
        left = int(torch.randint(width - self.crop_size + 1, (), generator=generator))
        flip = int(torch.randint(2, (), generator=generator)) if self.flip else 0
        return [top, left, flip]

    def batch(self, plan: EpochPlan, number: int) -> dict[str, Tensor]:
        """Batch ``number`` of ``plan``: ``float32`` images in [-1, 1], cropped and flipped."""
        first, end = plan.bounds[number]
        draws = plan.draws[first:end]  # a view: no copy, no synchronisation
        out: dict[str, Tensor] = {}
        for table, images in enumerate(self.tables):
            entry, top, left, flip = draws[:, table].unbind(1)
            rows = top[:, None] + self._offsets  # items x crop
            # A flipped crop reads its columns right to left.
            columns = torch.where(flip[:, None].bool(), left[:, None] + self.crop_size - 1
                                  - self._offsets, left[:, None] + self._offsets)
            for key, stack in images.items():
                channels = torch.arange(stack.shape[1], device=self.device)
                picked = stack[entry[:, None, None, None], channels[None, :, None, None],
                               rows[:, None, :, None], columns[:, None, None, :]]
                if picked.dtype == torch.uint8:
                    # The arithmetic of imtrans.data.transforms.to_tensor: identical floats.
                    out[key] = picked.to(torch.float32).div_(127.5).sub_(1.0)
                else:  # float32 images were mapped to [-1, 1] when cached
                    out[key] = picked
        return out

