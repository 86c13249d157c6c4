"""Memory budgets for work whose size a file or a flag sets: an image's pixels, a check size.

A 171 KB PNG can declare 9400 x 9400 16-bit pixels, and ``export --check-size 100000`` asks
for a 120 GB input: sizes like these are estimated before anything of that size is allocated,
and refused with one line when the estimate is above the budget. The budget is
``--max-memory`` (``max_memory=`` in Python); by default three quarters of the memory
available now (``MemAvailable``, or the machine's memory where that cannot be read, and
never more than a container's limit). The estimates are lower bounds, so nothing that fits
is refused.

Example:
    >>> parse_size("1.5G"), parse_size("512M"), parse_size("4096")
    (1610612736, 536870912, 4096)
    >>> size_text(3 * 2**30)
    '3.0 GiB'
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

from imtrans.engine.device import _cgroup_limit, device_memory
from imtrans.errors import InvalidArgumentError

__all__ = ["available_memory", "default_budget", "parse_size", "peak_activation_values",
           "size_text"]

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``4096``, ``512M``, ``1.5G``, ``2GiB`` or ``2GB`` (powers of 1024).

    Raises:
        InvalidArgumentError: not a size, or not above 0.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidArgumentError(f"{text!r} is not a size; give bytes or a number with K, "
                                   "M, G or T (e.g. 8G)")
    value = float(match[1]) * _UNITS[match[2].upper()]
    if not math.isfinite(value) or value < 1:
        raise InvalidArgumentError(f"{text!r} is not a size above 0 bytes")
    return int(value)


def size_text(count: float) -> str:
    """``count`` bytes in the largest binary unit that keeps it at 1 or more."""
    value, unit = float(count), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{int(value)} bytes" if unit == "bytes" else f"{value:,.1f} {unit}"


def available_memory() -> int | None:
    """Bytes of memory available to this process now, when they can be read."""
    sizes = [size for size in (_meminfo_available(), _cgroup_limit()) if size is not None]
    if not sizes:
        total = device_memory(torch.device("cpu"))
        return total
    return min(sizes)


def default_budget() -> int:
    """The default memory budget: three quarters of :func:`available_memory` (4 GiB when it
    cannot be read)."""
    available = available_memory()
    return 3 * available // 4 if available else 4 * 2**30


def peak_activation_values(generator: nn.Module, channels: int, height: int,
                           width: int, batch: int = 1) -> int:
    """A lower bound of the values alive at once when ``generator`` runs on a batch of
    ``height x width`` images without gradients: the largest layer's input and output.

    The network runs on the meta device (shapes only: no memory, no compute), through
    ``functional_call`` with meta copies of its weights, so the network itself is untouched.
    Returns 0 when a layer has no meta kernel.
    """
    largest = [0]

    def count(module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
        if isinstance(output, torch.Tensor) and not any(module.children()):
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            alive = output.numel() + (first.numel() if first is not None else 0)
            largest[0] = max(largest[0], alive)

    state = {name: torch.empty_like(value, device="meta")
             for name, value in [*generator.named_parameters(), *generator.named_buffers()]}
    hooks = [module.register_forward_hook(count) for module in generator.modules()]
    example = torch.empty(batch, channels, height, width, device="meta")
    try:
        with torch.no_grad():
            functional_call(generator, state, (example,))
    except (NotImplementedError, RuntimeError):
        return 0  # an operation without a meta kernel: no estimate, so nothing refused
    finally:
        for hook in hooks:
            hook.remove()
    return largest[0]


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return None
