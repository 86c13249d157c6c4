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

from imtrans.core.atomic import atomic_write
from imtrans.runs.file_access import append_text
from imtrans.runs.metrics_file import read_metrics_lines, warn_damaged

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
        with append_text(self.path) as file:  # never through a link (imtrans.runs.file_access)
            file.write(json.dumps(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        """Every usable record, in order; a torn last line is left out, and damaged lines
        are skipped with one :class:`~imtrans.runs.metrics_file.DamagedMetricsWarning`."""
        lines = list(read_metrics_lines(self.path))
        warn_damaged(self.path, lines, "they are not used")
        return [line.record for line in lines if line.record is not None]

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (written after the checkpoint a resume starts from), and
        any line a killed process left half-written. The file is replaced in one rename, so
        a second kill now cannot lose the records kept.

        A damaged line inside the file (not JSON, not UTF-8, not an object, a step that is not
        a whole number) cannot be placed before or after ``step``: it is kept byte for byte,
        skipped, and named in one warning, so the run still resumes and nothing is lost.
        """
        lines = list(read_metrics_lines(self.path))
        if not lines and not self.path.exists():
            return
        warn_damaged(self.path, lines, "they are kept as they are and not used")
        kept = [line.raw for line in lines
                if (line.record is not None and line.record["step"] <= step)
                or (line.record is None and line.complete)]
        atomic_write(self.path, b"".join(raw + b"\n" for raw in kept))  # as written
