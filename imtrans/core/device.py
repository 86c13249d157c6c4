"""Getting ready to train: the device a recipe or an option names, its memory, and the seeds."""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch

from imtrans.core.observer import TrainingObserver
from imtrans.errors import InvalidArgumentError, RecipeError

__all__ = ["device_memory", "meminfo_bytes", "parse_device", "seed_everything", "select_device"]

#: The device types imtrans trains and translates on.
DEVICE_TYPES = ("cpu", "cuda", "mps")


def parse_device(name: str | torch.device | None, where: str = "--device") -> torch.device:
    """The device ``name`` names, checked against this machine; ``auto`` or None: the GPU
    when there is one, else the CPU.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``, or a :class:`torch.device`.
        where: What set it, for the message (``run.device``, ``--device``).

    Raises:
        InvalidArgumentError: not a device name, a type imtrans does not run on, or a device
            this machine lacks (naming ``where`` and what is available).

    Example:
        >>> parse_device("cpu")
        device(type='cpu')
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        # torch's message lists twenty device types imtrans does not run on.
        device = None
    if device is None or (device.type == "cpu" and device.index not in (None, 0)):
        raise InvalidArgumentError(f"{where} = {str(name)!r}: not a device name; use "
                                   '"auto", "cpu", "cuda" or "cuda:N"')
    if device.type not in DEVICE_TYPES:
        raise InvalidArgumentError(f"{where} = {str(name)!r}: imtrans runs on "
                                   f"{', '.join(DEVICE_TYPES)}, not {device.type}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgumentError(f"{where} = {str(name)!r}, but no CUDA device is "
                                       'available (use "auto" or "cpu")')
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InvalidArgumentError(f"{where} = {str(name)!r}, but this machine has "
                                       f"{count} CUDA device(s): cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidArgumentError(f"{where} = {str(name)!r}, but MPS is not available here")
    return device


def select_device(name: str, observer: TrainingObserver) -> torch.device:
    """The device ``run.device`` names; ``auto`` picks the GPU when there is one.

    Raises:
        RecipeError: the name is not a device, or names a GPU this machine lacks.
    """
    if name == "auto" and not torch.cuda.is_available():
        observer.message("no GPU found: training on the CPU. That is fine for small runs; "
                         "full-size recipes take days there, and a GPU is advised.")
    try:
        return parse_device(name, "run.device")
    except InvalidArgumentError as exc:
        raise RecipeError(str(exc)) from None


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory ``device`` has in all (None when it cannot be read).

    The CPU's is the smaller of the machine's RAM (``/proc/meminfo``, else ``sysconf``) and a
    cgroup limit (containers); a GPU's is its total memory, read without creating a CUDA
    context (a context holds memory of its own, which a parent of torchrun ranks would keep).
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(index).total_memory)
    if device.type != "cpu":
        return None
    sizes = [size for size in (_meminfo_total(), _sysconf_total(), _cgroup_limit())
             if size is not None]
    return min(sizes) if sizes else None


def _meminfo_total() -> int | None:
    return meminfo_bytes("MemTotal")


def meminfo_bytes(field: str) -> int | None:
    """A field of Linux's ``/proc/meminfo`` (``MemTotal``, ``MemAvailable``...) in bytes, or
    None where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf_total() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # not on every platform
        return None


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # cgroup v1 writes a huge number for none
            return int(text)
    return None


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and GPUs), Python's ``random`` and numpy, for reproducible runs."""
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # numpy is optional for torch; nothing to seed then
        return
    np.random.seed(seed % 2**32)
