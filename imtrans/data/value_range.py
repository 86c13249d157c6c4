"""Value ranges: how a domain's native units map to the networks' [-1, 1] and back.

Each domain (A, the input; B, the target) has a range ``[low, high]`` in its files' units:
``low`` becomes -1, ``high`` becomes +1, values outside are clipped. ``data.value_range``
chooses it, for both domains or per domain:

- ``"dtype"`` (the default): the sample type's full range: 0..255 for 8-bit files (today's
  mapping, ``x / 127.5 - 1``, bit for bit), 0..65535 for uint16, -32768..32767 for int16,
  0..1 for float files.
- ``"auto"``: robust percentiles (0.5 and 99.5) over a sample of the training split (up to
  :data:`AUTO_FILES` files, evenly spaced), computed once and cached by the files' names,
  sizes and times (see :func:`auto_range`).
- ``[low, high]``: given in native units, e.g. ``[-1024, 3071]`` for CT in Hounsfield units.

A recipe writes ``value_range = "auto"`` (both domains) or ``value_range = {A = [-1024, 3071],
B = "dtype"}``. The ranges a run trained with are written into its checkpoints (manifest entry
``values``, see :func:`values_manifest`), so ``translate`` and ``eval`` map outputs back to
native units without being told again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from imtrans.errors import DataError, InvalidArgumentError

__all__ = [
    "AUTO_FILES",
    "AUTO_PERCENTILES",
    "DomainValues",
    "ValueRange",
    "ValueRangeSpec",
    "auto_range",
    "dtype_range",
    "parse_value_ranges",
    "to_network_tensor",
    "values_from_manifest",
    "values_manifest",
]

#: The percentiles ``"auto"`` takes: robust to a few hot pixels, clipping 1% of values.
AUTO_PERCENTILES = (0.5, 99.5)
#: How many files of the training split ``"auto"`` reads at most (evenly spaced).
AUTO_FILES = 64
#: How many values of each file ``"auto"`` keeps at most (a regular subsample).
_AUTO_VALUES_PER_FILE = 65536


@dataclass(frozen=True)
class ValueRange:
    """A domain's native ``[low, high]``, mapped onto [-1, 1].

    Attributes:
        low: The native value that becomes -1.
        high: The native value that becomes +1 (> ``low``).
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.high > self.low):
            raise InvalidArgumentError(f"a value range needs finite low < high, got "
                                       f"[{self.low}, {self.high}]")

    @property
    def is_8bit(self) -> bool:
        """The 8-bit mapping (0..255), which keeps the exact arithmetic of 8-bit data."""
        return self.low == 0.0 and self.high == 255.0

    @property
    def span(self) -> float:
        """``high - low``: the ``data_range`` of PSNR and SSIM in native units."""
        return self.high - self.low

    def normalize(self, array: np.ndarray) -> np.ndarray:
        """Native values (any numeric type) to ``float32`` in [-1, 1], clipped.

        Example:
            >>> ValueRange(-1024, 3071).normalize(np.array([-1024, 3071, 5000])).tolist()
            [-1.0, 1.0, 1.0]
        """
        values = np.asarray(array, dtype=np.float32)
        scale = np.float32(2.0 / self.span)
        out = (values - np.float32(self.low)) * scale - np.float32(1.0)
        np.nan_to_num(out, copy=False, nan=-1.0)
        return np.clip(out, -1.0, 1.0, out=out)

    def denormalize(self, values: Tensor) -> Tensor:
        """Network values in [-1, 1] (clamped first) to native units, as ``float32``.

        Example:
            >>> ValueRange(0, 65535).denormalize(torch.tensor([-1.0, 1.0])).tolist()
            [0.0, 65535.0]
        """
        half = self.span / 2
        return values.float().clamp(-1, 1).add(1).mul_(half).add_(self.low)

    def as_list(self) -> list[float]:
        """``[low, high]``, for JSON and TOML."""
        return [self.low, self.high]


def dtype_range(dtype: np.dtype[Any] | str) -> ValueRange:
    """The full range of a sample type: 0..255, 0..65535, -32768..32767, or 0..1 for floats.

    Example:
        >>> dtype_range("uint16")
        ValueRange(low=0.0, high=65535.0)
    """
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return ValueRange(float(info.min), float(info.max))
    return ValueRange(0.0, 1.0)


@dataclass(frozen=True)
class DomainValues:
    """What a run knows of a domain's values: its range and the type its files have.

    Attributes:
        range: The native range that maps onto [-1, 1].
        dtype: The sample type of the domain's files (``uint8``, ``uint16``, ``int16``,
            ``float32``): what ``translate`` writes by default.
        channels: The band count.
    """

    range: ValueRange
    dtype: str
    channels: int

    def to_json(self) -> dict[str, Any]:
        return {"range": self.range.as_list(), "dtype": self.dtype, "channels": self.channels}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DomainValues:
        low, high = data["range"]
        return cls(ValueRange(float(low), float(high)), str(data["dtype"]), int(data["channels"]))


def values_manifest(values: dict[str, DomainValues]) -> dict[str, Any]:
    """The checkpoint manifest entry ``values``: per domain key, its range, type and bands."""
    return {key: domain.to_json() for key, domain in values.items()}


def values_from_manifest(manifest: dict[str, Any]) -> dict[str, DomainValues] | None:
    """The ``values`` of a checkpoint manifest; None for checkpoints made before value ranges
    (which trained 8-bit data in 0..255)."""
    entry = manifest.get("values")
    if not isinstance(entry, dict):
        return None
    try:
        return {key: DomainValues.from_json(data) for key, data in entry.items()}
    except (KeyError, TypeError, ValueError, InvalidArgumentError):
        return None


Spec = str | tuple[float, float]

#: What ``value_range`` takes: ``"dtype"``, ``"auto"``, ``[low, high]``, or a table of those
#: with keys ``A`` and ``B``.
ValueRangeSpec = str | list[float] | dict[str, str | list[float]]


def _parse_one(spec: Any, where: str) -> Spec:
    if spec in ("dtype", "auto"):
        return str(spec)
    if (isinstance(spec, list | tuple) and len(spec) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec)):
        low, high = float(spec[0]), float(spec[1])
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise InvalidArgumentError(f"{where} = {list(spec)}: low must be below high, "
                                       "both finite")
        return (low, high)
    raise InvalidArgumentError(f'{where} must be "dtype", "auto" or [low, high] in the files\' '
                               f"units, got {spec!r}")


def parse_value_ranges(spec: Any) -> dict[str, Spec]:
    """``data.value_range`` as one spec per domain: ``{"A": ..., "B": ...}``.

    Accepts one spec for both domains or a table with keys ``A`` and/or ``B`` (a missing key is
    ``"dtype"``).

    Raises:
        InvalidArgumentError: anything else, with the accepted forms.

    Example:
        >>> parse_value_ranges({"A": [-1024, 3071]})
        {'A': (-1024.0, 3071.0), 'B': 'dtype'}
    """
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"A", "B"})
        if unknown:
            raise InvalidArgumentError(f"value_range has keys A and B (the input and the "
                                       f"target domain), got {', '.join(map(repr, unknown))}")
        return {key: _parse_one(spec.get(key, "dtype"), f"value_range.{key}") for key in "AB"}
    one = _parse_one(spec, "value_range")
    return {"A": one, "B": one}


def _cache_file(paths: Sequence[Path], channels: int, part: str) -> Path | None:
    """The cache entry of an ``auto`` range: keyed by the files' paths, sizes and times, and
    the part of each file read."""
    from imtrans.core.user_cache import user_cache_dir

    key = (AUTO_PERCENTILES, _AUTO_VALUES_PER_FILE, channels, part)
    digest = hashlib.sha256(repr(key).encode())
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            return None
        digest.update(f"{path.resolve()}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    return user_cache_dir() / "value_ranges" / f"{digest.hexdigest()[:32]}.json"


def _read_cached(cache: Path | None) -> ValueRange | None:
    if cache is None:
        return None
    try:
        low, high = json.loads(cache.read_text())["range"]
        return ValueRange(float(low), float(high))
    except (OSError, ValueError, KeyError, TypeError, InvalidArgumentError):
        return None  # no entry, or a damaged one: computed again


def _write_cached(cache: Path | None, found: ValueRange) -> None:
    if cache is None:
        return
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"range": found.as_list()}))
        os.replace(partial, cache)
    except OSError:
        pass  # a read-only home only costs computing it again next time


def auto_range(paths: Sequence[Path], read: Callable[[Path], np.ndarray], *,
               channels: int, part: str = "", where: str = "value_range") -> ValueRange:
    """The robust range of a domain: :data:`AUTO_PERCENTILES` over a sample of its files.

    Up to :data:`AUTO_FILES` files, evenly spaced in ``paths`` (sorted), each subsampled to at
    most ``65,536`` values; the result depends only on the files, so a resumed or repeated run
    finds the same range. It is cached in the user cache (``$IMTRANS_CACHE_DIR/value_ranges``)
    by the files' paths, sizes and modification times, the band count and ``part``.

    Args:
        paths: The domain's training files.
        read: Reads one file as an ``H x W x C`` array in native units.
        channels: The domain's band count (part of the cache key).
        part: Which part of each file ``read`` gives, when two domains read one file (the
            left and right halves of the ``aligned`` layout): part of the cache key, so that
            they do not share an entry.
        where: The recipe key, for messages.

    Raises:
        DataError: no sampled file can be read, or the values are all equal (no range).
    """
    count = len(paths)
    # Evenly spaced over all the files, the first and the last included (spaced by the number
    # taken: spacing by AUTO_FILES took the first file only for short lists).
    taken = min(count, AUTO_FILES)
    picked = [paths[round(i * (count - 1) / max(1, taken - 1))] for i in range(taken)]
    picked = list(dict.fromkeys(picked))
    cache = _cache_file(picked, channels, part)
    cached = _read_cached(cache)
    if cached is not None:
        return cached
    samples = []
    for path in picked:
        try:
            values = np.asarray(read(path), dtype=np.float64).ravel()
        except DataError:
            continue  # the dataset skips it as well
        step = max(1, values.size // _AUTO_VALUES_PER_FILE)
        values = values[::step]
        samples.append(values[np.isfinite(values)])
    joined = np.concatenate(samples) if samples else np.empty(0)
    if joined.size == 0:
        raise DataError(f'{where} = "auto": none of the {len(picked)} sampled files could be '
                        "read, so no range can be computed")
    low, high = (float(v) for v in np.percentile(joined, AUTO_PERCENTILES))
    if not high > low:
        raise DataError(f'{where} = "auto": the sampled values are all {low:g}; give the range '
                        "as [low, high]")
    found = ValueRange(low, high)
    _write_cached(cache, found)
    return found


def to_network_tensor(image: np.ndarray, value_range: ValueRange | None) -> Tensor:
    """An ``H x W x C`` native array as the ``C x H x W`` ``float32`` tensor the networks see.

    ``uint8`` images in 0..255 take :func:`imtrans.data.transforms.to_tensor`'s arithmetic, so
    8-bit data gives the floats it always gave; other types and ranges go through
    :meth:`ValueRange.normalize`. ``value_range=None`` is the type's full range.
    """
    if value_range is None:
        value_range = dtype_range(image.dtype)
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    if image.dtype == np.uint8 and value_range.is_8bit:
        return torch.from_numpy(chw.astype(np.float32)).div_(127.5).sub_(1.0)
    return torch.from_numpy(value_range.normalize(chw))
