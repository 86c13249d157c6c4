"""What the core reads from a component: the interfaces a plugin's generator, dataset or
metrics logger fills.

These are :class:`typing.Protocol` classes: a component satisfies one by having the members,
with no base class to inherit. The core types against them, reads the optional members through
the functions here (one place, one default), and ``tests/test_contracts.py`` checks every
registered component against them, a plugin's included.

Example:
    >>> import imtrans
    >>> net = imtrans.components().generators.create("unet_128", ngf=4)
    >>> isinstance(net, Generator), size_multiple(net)
    (True, 128)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TypeGuard, runtime_checkable

from torch import Tensor

__all__ = [
    "CacheableDataset",
    "Generator",
    "MetricsLogger",
    "TrainingDataset",
    "is_cacheable",
    "is_paired",
    "size_multiple",
]


@runtime_checkable
class Generator(Protocol):
    """A generator: maps ``N x in_channels x H x W`` in [-1, 1] to ``N x out_channels x H x W``.

    Attributes:
        size_multiple: H and W must be multiples of it (a U-Net halves the size
            ``num_downs`` times: ``2 ** num_downs``); 1 when any size works. Optional:
            :func:`size_multiple` reads 1 for a generator without it.
    """

    def __call__(self, images: Tensor) -> Tensor: ...


@runtime_checkable
class TrainingDataset(Protocol):
    """A training dataset: items are dicts of ``"A"`` and ``"B"`` image tensors in [-1, 1].

    Attributes:
        paired: Class attribute: whether ``item["B"]`` is the ground truth of ``item["A"]``
            (aligned data, pix2pix) or an independent image of domain B (CycleGAN). Optional:
            :func:`is_paired` reads False for a dataset without it.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Mapping[str, Any]: ...


@runtime_checkable
class CacheableDataset(TrainingDataset, Protocol):
    """A dataset that can be held on the training device as ``uint8`` (``data.cache``).

    The folder datasets offer this view; see :mod:`imtrans.data.device_cache` for how the cache
    uses it. A dataset without it streams through loading processes.

    Attributes:
        transform: The dataset's transform; the cache follows its ``preprocess`` (it must be
            ``"resize_and_crop"``), ``load_size``, ``crop_size`` and ``flip``.
    """

    transform: Any

    def cache_tables(self) -> list[dict[str, int]]:
        """For each table its image keys and their channel counts."""
        ...

    def table_length(self, table: int) -> int:
        """How many entries ``table`` has."""
        ...

    def entry_path(self, table: int, position: int) -> Path:
        """The file behind an entry."""
        ...

    def load_resized(self, table: int, position: int) -> tuple[dict[str, Any], Path]:
        """An entry decoded and resized to ``load_size`` (``H x W x C`` uint8 arrays)."""
        ...

    def item_positions(self, index: int, generator: Any = None) -> list[int]:
        """The entry of each table that item ``index`` uses."""
        ...


@runtime_checkable
class MetricsLogger(Protocol):
    """A destination for what a run records (jsonl, and the trackers of the next release).

    Values arrive where the training loop reads them from the device anyway; a logger never
    causes a read of its own.
    """

    def log_hyperparameters(self, resolved_recipe: Mapping[str, Any]) -> None:
        """The run's fully resolved recipe, once at the start."""
        ...

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Loss terms, learning rate, images/s, ... at ``step``."""
        ...

    def log_image(self, step: int, name: str, path: Path) -> None:
        """A sample grid written at ``step``."""
        ...

    def close(self) -> None:
        """The run ended (finished, interrupted or failed): flush and release."""
        ...


def size_multiple(generator: object) -> int:
    """The multiple H and W must be of for ``generator`` (1 when it does not say)."""
    return int(getattr(generator, "size_multiple", 1))


def is_paired(dataset: object) -> bool:
    """Whether a dataset (class or instance) gives ground-truth pairs (False when it does not
    say: then nothing assumes ``B`` is the translation of ``A``)."""
    return bool(getattr(dataset, "paired", False))


def is_cacheable(dataset: object) -> TypeGuard[CacheableDataset]:
    """Whether ``dataset`` offers the view the device cache reads."""
    return isinstance(dataset, CacheableDataset)
