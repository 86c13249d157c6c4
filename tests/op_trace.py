"""A recorder of the operations a training step dispatches, for tests that pin them.

:class:`OpTrace` is a ``TorchDispatchMode``: it sees every ATen operation below autograd (the
forwards, the backwards, the optimiser's updates, random draws) and records, in order, its
name, the dtype and shape of each tensor argument and the value of every other argument. That
is what a step *does*, independent of the CPU it runs on: how a kernel rounds is decided below
this level, so the record is the same on any machine with the same torch release, while a
changed operation, order, shape, constant or random draw changes it.

Example:
    >>> import torch
    >>> with OpTrace() as trace:
    ...     _ = torch.ones(2, 3) * 0.5
    >>> trace.records
    ['aten.ones.default(2, 3, cpu, False)', 'aten.mul.Tensor(float32[2,3], 0.5)']
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        shape = ",".join(str(size) for size in value.shape)
        return f"{str(value.dtype).removeprefix('torch.')}[{shape}]"
    if isinstance(value, float):
        return repr(value)  # Python floats are IEEE doubles: the same on every CPU
    if value is None or isinstance(value, (bool, int, str, torch.dtype, torch.device,
                                           torch.layout, torch.memory_format)):
        return str(value)
    return type(value).__name__  # an opaque object (a profiler handle): not its address


class OpTrace(TorchDispatchMode):
    """Record each dispatched operation as one line (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        flat, _ = tree_flatten((args, kwargs or {}))
        self.records.append(f"{func}({', '.join(_describe(value) for value in flat)})")
        return func(*args, **(kwargs or {}))

    def digest(self) -> str:
        """sha256 of the records, one per line."""
        return hashlib.sha256("\n".join(self.records).encode()).hexdigest()

    def counts(self) -> dict[str, int]:
        """How many times each operation ran (its name only), for a readable difference."""
        return dict(sorted(Counter(record.split("(", 1)[0] for record in self.records).items()))
