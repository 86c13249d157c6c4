"""Where training batches come from: the device cache, or loading processes.

:func:`training_data` builds the recipe's dataset and picks how its batches reach the device
(``[data] cache``):

- :class:`CachedBatches`: every image decoded once and kept on the training device as
  ``uint8`` (:class:`~imtrans.data.device_cache.DeviceImageCache`); each step's batch is
  gathered, cropped and flipped there. The default on a GPU when the images take at most a
  quarter of its memory.
- :class:`StreamedBatches`: DataLoader workers decode (and, with ``augment = "cpu"``, crop and
  flip) each batch, which is copied to the device from pinned memory without blocking.

Both follow the same :class:`~imtrans.data.sampler.EpochBatches` order, shard the same way across
processes, and resume exactly from a step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeGuard

import torch
from torch import Tensor

from imtrans.core.components import Components
from imtrans.core.contracts import CacheableDataset, TrainingDataset, is_cacheable
from imtrans.core.observer import TrainingObserver
from imtrans.data.build import build_dataset
from imtrans.data.device_augment import DeviceAugment
from imtrans.data.device_cache import DeviceImageCache, cache_bytes
from imtrans.data.sampler import SKIPPED_KEY, EpochBatches, SeededItems, make_loader
from imtrans.data.workers import capped_workers
from imtrans.errors import RecipeError
from imtrans.recipe import Recipe

__all__ = ["CachedBatches", "StreamedBatches", "TrainingData", "check_cache_mode", "training_data"]

#: The share of a GPU's memory ``cache = "auto"`` lets the images take.
AUTO_CACHE_SHARE = 0.25


class StreamedBatches:
    """Batches decoded by DataLoader workers and copied to ``device`` (see the module doc)."""

    def __init__(self, dataset: TrainingDataset, augment: DeviceAugment | None, *,
                 batch_size: int,
                 num_workers: int, seed: int, device: torch.device, rank: int = 0,
                 world_size: int = 1) -> None:
        self.loader, self.sampler = make_loader(
            dataset, batch_size=batch_size, num_workers=num_workers, seed=seed,
            pin_memory=device.type == "cuda", rank=rank, world_size=world_size)
        self.augment = augment
        self.device = device
        self.skipped: set[str] = set()

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch to iterate, skipping its first ``start`` batches (resume)."""
        self.sampler.set_epoch(epoch, start)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        batches = iter(self.loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except BaseException:
                # A worker's error ends training: its traceback keeps the loader's iterator,
                # and so its (persistent) workers, alive; end them now, not at exit.
                self.close()
                raise
            for listed in batch.get(SKIPPED_KEY, ()):
                self.skipped.update(path for path in listed.split("\n") if path)
            on_device = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()
                         if isinstance(v, Tensor)}
            yield on_device if self.augment is None else self.augment(on_device)

    def close(self) -> None:
        """Shut the loading processes down (the next iteration starts new ones)."""
        iterator = getattr(self.loader, "_iterator", None)  # persistent workers' iterator
        self.loader._iterator = None
        shut_down = getattr(iterator, "_shutdown_workers", None)
        if shut_down is not None:
            shut_down()


class CachedBatches:
    """Batches gathered from a :class:`DeviceImageCache` (see the module docstring)."""

    def __init__(self, cache: DeviceImageCache, *, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        self.cache = cache
        length = len(cache.dataset)
        self.sampler = EpochBatches(length, batch_size, seed, rank=rank, world_size=world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch to iterate, skipping its first ``start`` batches (resume)."""
        self.sampler.set_epoch(epoch, start)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        plan = self.cache.plan(list(self.sampler))  # the epoch's draws, copied once
        for number in range(len(plan.bounds)):
            yield self.cache.batch(plan, number)


@dataclass
class TrainingData:
    """The recipe's dataset and the batches training takes from it.

    Attributes:
        dataset: The dataset the recipe names.
        batches: Iterate after ``batches.set_epoch(epoch, start)``.
        cache: The device cache, when the images are held there.
    """

    dataset: TrainingDataset
    batches: CachedBatches | StreamedBatches
    cache: DeviceImageCache | None = None

    @property
    def skipped(self) -> list[str]:
        """The image files found unusable so far (each replaced by the next usable one)."""
        batches = self.batches
        found = (self.cache.skipped if self.cache is not None
                 else batches.skipped if isinstance(batches, StreamedBatches) else set())
        return sorted(found)

    def fixed_batch(self, count: int, seed: int, device: torch.device) -> dict[str, Tensor]:
        """The first ``count`` items, always drawn the same way (centre-cropped when the crop
        happens on the device): the inputs of the sample grids."""
        items = [(i, seed + i) for i in range(min(count, len(self.dataset)))]
        if self.cache is not None:
            return self.cache.batch(self.cache.plan([items], centre=True), 0)
        seeded = SeededItems(self.dataset)
        picked = [seeded[item] for item in items]
        batch = {k: torch.stack([p[k] for p in picked]).to(device)
                 for k, v in picked[0].items() if isinstance(v, Tensor)}
        augment = self.batches.augment if isinstance(self.batches, StreamedBatches) else None
        return batch if augment is None else augment.center_crop(batch)


def training_data(recipe: Recipe, registry: Components, observer: TrainingObserver,
                  device: torch.device, *, rank: int = 0, world_size: int = 1,
                  num_workers: int | None = None) -> TrainingData:
    """Build the ``[data]`` dataset and its batches for this process (see the module doc).

    Args:
        recipe: The validated recipe.
        registry: The components.
        observer: Receives the line saying where the images are held.
        device: The training device.
        rank: This process's rank (several processes: each takes its share).
        world_size: The number of processes.
        num_workers: Overrides ``data.num_workers``. Either is capped at the usable CPU
            cores, with a notice.

    Raises:
        RecipeError: ``cache = "device"`` for data the cache cannot hold.
        DataError: no usable image (from the dataset).
    """
    dataset, augment = build_dataset(recipe, registry, observer)
    workers = recipe.data.num_workers if num_workers is None else num_workers
    workers, notice = capped_workers(workers, "data.num_workers =")
    if notice is not None:
        observer.message(f"note: {notice}")
    batch_size, seed = recipe.data.batch_size, recipe.run.seed
    if _use_cache(recipe, dataset, device, observer):
        crop_size, flip = _crop_and_flip(dataset, augment)
        load_size = dataset.transform.load_size
        files = sum(dataset.table_length(t) for t in range(len(dataset.cache_tables())))
        observer.message(f"decoding {files:,} image files once into {device} memory "
                         f"({cache_bytes(dataset, load_size) / 2**30:.2f} GiB, data.cache)")
        cache = DeviceImageCache.fill(dataset, device, load_size=load_size,
                                      crop_size=crop_size, flip=flip, num_workers=workers)
        return TrainingData(dataset, CachedBatches(cache, batch_size=batch_size, seed=seed,
                                                   rank=rank, world_size=world_size), cache)
    streamed = StreamedBatches(dataset, augment, batch_size=batch_size, num_workers=workers,
                              seed=seed, device=device, rank=rank, world_size=world_size)
    return TrainingData(dataset, streamed)


def _use_cache(recipe: Recipe, dataset: TrainingDataset, device: torch.device,
               observer: TrainingObserver) -> TypeGuard[CacheableDataset]:
    """Whether ``[data] cache`` and the data put the images in device memory."""
    mode = recipe.data.cache
    if mode == "off":
        return False
    check_cache_mode(recipe, dataset)
    if _why_not_cacheable(dataset) is not None or not is_cacheable(dataset):  # narrows the type
        return False
    size = cache_bytes(dataset, dataset.transform.load_size)
    if mode == "auto":
        if device.type != "cuda":
            return False
        budget = AUTO_CACHE_SHARE * torch.cuda.get_device_properties(device).total_memory
        if size > budget:
            observer.message(f"streaming the images: they take {size / 2**30:.1f} GiB, over "
                             f"a quarter of {device}'s memory (data.cache = \"auto\")")
            return False
    elif device.type == "cuda" and size > torch.cuda.mem_get_info(device)[0]:
        free = torch.cuda.mem_get_info(device)[0]
        raise RecipeError(f'[data] cache = "device": the images take {size / 2**30:.1f} GiB, '
                          f"more than the {free / 2**30:.1f} GiB free on {device}; "
                          'set cache = "off" or "auto"')
    return True


def check_cache_mode(recipe: Recipe, dataset: TrainingDataset) -> None:
    """Refuse ``[data] cache = "device"`` for a dataset the device cache cannot hold (checked
    by ``imtrans validate`` too, through :func:`imtrans.cli.preflight.check_runnable`).

    Raises:
        RecipeError: naming why, and the way out.
    """
    reason = _why_not_cacheable(dataset)
    if recipe.data.cache == "device" and reason is not None:
        raise RecipeError(f'[data] cache = "device": {reason}; set cache = "off"')


def _why_not_cacheable(dataset: TrainingDataset) -> str | None:
    """Why the device cache cannot hold ``dataset``, or None when it can."""
    if not is_cacheable(dataset):
        return (f"the dataset {type(dataset).__name__} does not offer the cache view "
                "(see imtrans.data.device_cache)")
    preprocess = getattr(getattr(dataset, "transform", None), "preprocess", None)
    if preprocess != "resize_and_crop":
        return (f'the cache holds images of one size, which needs preprocess = '
                f'"resize_and_crop", not {preprocess!r}')
    return None


def _crop_and_flip(dataset: CacheableDataset, augment: DeviceAugment | None
                   ) -> tuple[int, bool]:
    """The random crop size and flip the recipe asks for (the device augmentation's, when the
    dataset was built to leave them to the device)."""
    if augment is not None:
        return augment.crop_size, augment.flip
    return dataset.transform.crop_size, dataset.transform.flip

