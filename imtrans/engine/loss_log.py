"""Loss logging without a device sync per step.

Training steps return loss tensors that stay on the device; :class:`LossMeter` sums them there
and reads them back once per logging interval, one transfer for all terms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imtrans.atomic import atomic_write

__all__ = ["LossMeter", "MetricsLog"]


class LossMeter:
    """Running sums of named loss tensors, kept on their device until :meth:`flush`."""

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._count = 0

    def add(self, losses: dict[str, Tensor]) -> None:
        """Add one step's losses (device tensors; nothing is read back)."""
        for key, value in losses.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value.clone()
        self._count += 1

    def flush(self) -> dict[str, float]:
        """The mean of each loss since the last flush, read back in one transfer."""
        if not self._count:
            return {}
        keys = list(self._sums)
        means = (torch.stack([self._sums[k].float() for k in keys]) / self._count).tolist()
        self._sums.clear()
        self._count = 0
        return dict(zip(keys, means, strict=True))


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (readable while training runs)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line and flush it to the file."""
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        """Every complete record, in order (a torn last line is left out)."""
        if not self.path.exists():
            return []
        parsed = (_record(line) for line in self.path.read_text(encoding="utf-8").splitlines())
        return [record for record in parsed if record is not None]

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (written after the checkpoint a resume starts from), and
        any line a killed process left half-written. The file is replaced in one rename, so
        a second kill now cannot lose the records kept."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            record = _record(line)
            if record is not None and int(record.get("step", 0)) <= step:
                kept.append(line)  # as written, not re-encoded
        atomic_write(self.path, "".join(line + "\n" for line in kept))


def _record(line: str) -> dict[str, Any] | None:
    """A metrics line's record; None for a torn line (a process killed while writing)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
