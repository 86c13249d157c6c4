"""Batches whose order and augmentation depend only on (seed, epoch, position).

Each epoch's order and each item's random augmentation come from a generator seeded by the run
seed and the epoch, never from the state of the process that loads the item. So a run resumed
in the middle of an epoch sees exactly the batches it would have seen, whatever the number of
DataLoader workers.

With several processes (``rank`` of ``world_size``), every rank draws the same epoch order and
takes its own slice of each global batch of ``batch_size x world_size`` items: the ranks read
disjoint items, make the same number of steps, and together see what one process with the
global batch size would see, item for item.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from imtrans.core.contracts import TrainingDataset
from imtrans.data.workers import worker_init

__all__ = ["SKIPPED_KEY", "EpochBatches", "SeededItems", "make_loader"]

#: The item key under which :class:`SeededItems` passes on the files found unusable so far.
SKIPPED_KEY = "skipped_paths"


class SeededItems(Dataset[Any]):
    """Wraps a dataset so that item ``(index, seed)`` is drawn with torch seeded by ``seed``.

    The caller's RNG state is saved and restored around the item, so loading in the main
    process (``num_workers = 0``) leaves the training RNG untouched.
    """

    def __init__(self, dataset: TrainingDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            item = self.dataset[index]
        if isinstance(item, dict) and hasattr(self.dataset, "skipped_paths"):
            # Each loading process holds its own copy of the dataset and of the files it
            # found unusable: items carry that list to the training process, which adds the
            # lists up for the final count.
            item = item | {SKIPPED_KEY: "\n".join(map(str, self.dataset.skipped_paths))}
        return item


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, seed)`` for one epoch, from batch ``start`` on.

    ``batch_size`` is per process. With ``world_size`` processes, step ``k`` of an epoch
    covers items ``k*G`` to ``(k+1)*G - 1`` of the epoch's order (``G = batch_size x
    world_size``) and rank ``r`` takes the ``r``-th block of ``batch_size`` of them. The last,
    smaller global batch is split evenly; when it does not divide, it is padded with the
    epoch's first items so that every rank has a batch of the same size (DDP averages the
    ranks' gradients with equal weights).

    Call :meth:`set_epoch` before iterating a new epoch (the DataLoader asks for a fresh
    iterator each time, so workers can persist across epochs).
    """

    def __init__(self, length: int, batch_size: int, seed: int, *, rank: int = 0,
                 world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch to iterate, skipping its first ``start`` batches (resume)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        steps = batches_per_epoch(self.length, self.batch_size * self.world_size)
        return max(0, steps - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator).tolist()
        seeds = torch.randint(2**62, (self.length,), generator=generator).tolist()
        items = list(zip(order, seeds, strict=True))
        size = self.batch_size * self.world_size
        for first in range(self.start * size, self.length, size):
            chunk = items[first:first + size]
            # The last global batch: equal shares, padded from the epoch's start if needed.
            share = -(-len(chunk) // self.world_size)
            chunk += items[:share * self.world_size - len(chunk)]
            yield chunk[self.rank * share:(self.rank + 1) * share]


def batches_per_epoch(length: int, batch_size: int) -> int:
    """How many batches one epoch of ``length`` items makes (the last may be smaller).

    With several processes, pass the global batch size (per-process size x processes).
    """
    return math.ceil(length / batch_size)


def make_loader(dataset: TrainingDataset, *, batch_size: int, num_workers: int, seed: int,
                pin_memory: bool, rank: int = 0, world_size: int = 1
                ) -> tuple[DataLoader[Any], EpochBatches]:
    """A DataLoader over ``dataset`` driven by an :class:`EpochBatches` sampler.

    ``batch_size`` is per process; ``rank`` and ``world_size`` select this process's share.

    Returns:
        The loader and its sampler (call ``sampler.set_epoch`` before each epoch).
    """
    sampler = EpochBatches(len(dataset), batch_size, seed,
                           rank=rank, world_size=world_size)
    # A DataLoader draws a base seed for its workers each time an iterator starts; with a
    # generator of its own that draw leaves the global RNG alone, so starting an epoch in a
    # resumed process does not shift the random stream the training step uses.
    loader = DataLoader(SeededItems(dataset), batch_sampler=sampler, num_workers=num_workers,
                        pin_memory=pin_memory, persistent_workers=num_workers > 0,
                        generator=torch.Generator().manual_seed(seed),
                        worker_init_fn=worker_init())
    return loader, sampler
