"""A folder dataset's domains: their value ranges and sample types, resolved once at build.

The datasets of :mod:`imtrans.data.folders` call :func:`resolve_domains` with the recipe's
``value_range`` and the files of each domain. The result says, per domain key (``A`` the
input, ``B`` the target), the range that maps onto [-1, 1] and the type of the files (what
``translate`` writes back); the trainer writes it into the checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imtrans.data.native_images import read_native
from imtrans.data.value_range import (
    DomainValues,
    ValueRange,
    auto_range,
    dtype_range,
    parse_value_ranges,
)
from imtrans.errors import DataError, InvalidArgumentError

__all__ = ["Domain", "DomainSet", "resolve_domains"]

#: How many files the type probe tries before taking the domain for 8-bit.
_PROBE_FILES = 8


@dataclass(frozen=True)
class Domain:
    """The files of one domain, as :func:`resolve_domains` needs them.

    Attributes:
        paths: The domain's files (the training split for ``"auto"``).
        channels: The band count it is read with.
        read: Reads one file as an ``H x W x channels`` native array (default:
            :func:`~imtrans.data.native_images.read_native`).
        part: Which part of each file ``read`` gives (``"left half"``) where domains share
            files; ``""``: the whole file. It keeps their ``"auto"`` ranges apart.
    """

    paths: Sequence[Path]
    channels: int
    read: Callable[[Path], np.ndarray] | None = None
    part: str = ""

    def reader(self) -> Callable[[Path], np.ndarray]:
        return self.read or (lambda path: read_native(path, self.channels))


@dataclass(frozen=True)
class DomainSet:
    """The resolved domains of a dataset.

    Attributes:
        values: Per key, the range, type and bands (the checkpoint's ``values``).
        ranges: Per key, the range the transforms use: ``None`` for ``"dtype"``, where each
            file takes its own type's range (so 8-bit files keep their exact arithmetic).
    """

    values: dict[str, DomainValues]
    ranges: dict[str, ValueRange | None]

    def range_of(self, key: str, dtype: np.dtype[Any]) -> ValueRange:
        """The range of an image of ``dtype`` in domain ``key``."""
        return self.ranges.get(key) or dtype_range(dtype)


def _probe_dtype(domain: Domain) -> str:
    """The sample type of the domain's first readable file (``uint8`` when none reads now:
    the dataset skips or refuses unreadable files itself)."""
    read = domain.reader()
    for path in list(domain.paths)[:_PROBE_FILES]:
        try:
            return read(path).dtype.name
        except DataError:
            continue
    return "uint8"


def resolve_domains(value_range: Any, domains: dict[str, Domain]) -> DomainSet:
    """Resolve ``value_range`` (see :func:`~imtrans.data.value_range.parse_value_ranges`)
    for the ``domains`` a dataset has.

    Raises:
        InvalidArgumentError: ``value_range`` is not a valid spec.
        DataError: ``"auto"`` found no readable file or no spread of values.
    """
    specs = parse_value_ranges(value_range)
    values: dict[str, DomainValues] = {}
    ranges: dict[str, ValueRange | None] = {}
    for key, domain in domains.items():
        spec = specs[key]
        dtype = _probe_dtype(domain)
        if spec == "dtype":
            found, ranges[key] = dtype_range(dtype), None
        elif spec == "auto":
            found = auto_range(domain.paths, domain.reader(), channels=domain.channels,
                               part=domain.part,
                               where=f"value_range.{key}")
            ranges[key] = found
        elif isinstance(spec, tuple):
            found = ranges[key] = ValueRange(*spec)
        else:  # parse_value_ranges gives nothing else
            raise InvalidArgumentError(f"value_range.{key}: unexpected {spec!r}")
        values[key] = DomainValues(found, dtype, domain.channels)
    return DomainSet(values, ranges)
