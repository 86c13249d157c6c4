"""Batches whose order and augmentation depend only on (seed, epoch, position).

Each epoch's order and each item's random augmentation come from a generator seeded by the run
seed and the epoch, never from the state of the process that loads the item. So a run resumed
in the middle of an epoch sees exactly the batches it would have seen, whatever the number of
DataLoader workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["EpochBatches", "SeededItems", "make_loader"]


class SeededItems(Dataset[Any]):
    """Wraps a dataset so that item ``(index, seed)`` is drawn with torch seeded by ``seed``.

    The caller's RNG state is saved and restored around the item, so loading in the main
    process (``num_workers = 0``) leaves the training RNG untouched.
    """

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, seed)`` for one epoch, from batch ``start`` on.

    Call :meth:`set_epoch` before iterating a new epoch (the DataLoader asks for a fresh
    iterator each time, so workers can persist across epochs).
    """

    def __init__(self, length: int, batch_size: int, seed: int) -> None:
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch to iterate, skipping its first ``start`` batches (resume)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(0, batches_per_epoch(self.length, self.batch_size) - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator).tolist()
        seeds = torch.randint(2**62, (self.length,), generator=generator).tolist()
        for first in range(self.start * self.batch_size, self.length, self.batch_size):
            last = first + self.batch_size
            yield list(zip(order[first:last], seeds[first:last], strict=True))


def batches_per_epoch(length: int, batch_size: int) -> int:
    """How many batches one epoch of ``length`` items makes (the last may be smaller)."""
    return math.ceil(length / batch_size)


def make_loader(dataset: Dataset[Any], *, batch_size: int, num_workers: int, seed: int,
                pin_memory: bool) -> tuple[DataLoader[Any], EpochBatches]:
    """A DataLoader over ``dataset`` driven by an :class:`EpochBatches` sampler.

    Returns:
        The loader and its sampler (call ``sampler.set_epoch`` before each epoch).
    """
    sampler = EpochBatches(len(dataset), batch_size, seed)  # type: ignore[arg-type]
    # A DataLoader draws a base seed for its workers each time an iterator starts; with a
    # generator of its own that draw leaves the global RNG alone, so starting an epoch in a
    # resumed process does not shift the random stream the training step uses.
    loader = DataLoader(SeededItems(dataset), batch_sampler=sampler, num_workers=num_workers,
                        pin_memory=pin_memory, persistent_workers=num_workers > 0,
                        generator=torch.Generator().manual_seed(seed))
    return loader, sampler
