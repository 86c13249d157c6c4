"""Reading a run's ``metrics.jsonl`` when lines of it are damaged.

Resume, the branch of an older checkpoint and ``imtrans report`` read the file a run appends
one JSON object to per logging interval. A line may be torn (the process was killed while
writing it), or damaged by hand or by the disk: not JSON, bytes that are not UTF-8, a JSON
value that is not an object, a ``step`` that is not a whole number. Such a line is skipped, and
one :class:`DamagedMetricsWarning` per read names the file and the lines; the run stays
resumable and the report is still drawn. Nothing here imports torch.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imtrans.core.jsonfile import JsonTooDeepError, loads_bounded
from imtrans.core.printable import printable_path

__all__ = [
    "DamagedMetricsWarning", "MetricsLine", "parse_record", "read_metrics_lines", "warn_damaged",
]

#: How many damaged lines one warning names (the count covers them all).
_NAMED = 5


class DamagedMetricsWarning(UserWarning):
    """Lines of a ``metrics.jsonl`` that hold no usable record were skipped."""


@dataclass(frozen=True)
class MetricsLine:
    """One line of ``metrics.jsonl``: its bytes as written (without the newline), and its
    record, or None with the reason it holds none."""

    number: int
    raw: bytes
    record: dict[str, Any] | None
    problem: str | None
    complete: bool


def parse_record(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The record a line holds, or None and why not.

    A record is a JSON object whose ``step`` is a whole number of at least 0 (every record
    training writes has one): resume and the report order and cut records by it.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"bytes that are not UTF-8 at column {exc.start + 1}"
    try:
        value = loads_bounded(text)
    except JsonTooDeepError:  # "[[[[..." 100000 deep: a RecursionError inside json
        return None, "JSON nested too deeply"
    except ValueError as exc:  # JSONDecodeError, and int() past the digit limit
        return None, f"not JSON ({str(exc).split(':')[0]})"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, not an object"
    step = value.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return None, f"its step {_short(step)} is not a whole number >= 0"
    return value, None


def read_metrics_lines(path: Path) -> Iterator[MetricsLine]:
    """Every non-blank line of ``path`` (none if it does not exist), in order, parsed.

    Nothing is warned here: callers say what they do with damaged lines (see
    :func:`warn_damaged`).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    lines = data.split(b"\n")
    for index, raw in enumerate(lines):
        complete = index < len(lines) - 1  # the last piece has no newline: it may be torn
        if not raw.strip():
            continue
        record, problem = parse_record(raw)
        yield MetricsLine(index + 1, raw, record, problem, complete)


def warn_damaged(path: Path, lines: list[MetricsLine], action: str) -> None:
    """One warning naming ``path`` and its damaged lines (those with a problem that are
    complete: a torn last line is what a killed run leaves, and is not warned about)."""
    damaged = [line for line in lines if line.problem is not None and line.complete]
    if not damaged:
        return
    named = "; ".join(f"line {line.number}: {line.problem}" for line in damaged[:_NAMED])
    more = f"; and {len(damaged) - _NAMED} more" if len(damaged) > _NAMED else ""
    count = f"{len(damaged)} damaged line{'s' if len(damaged) != 1 else ''}"
    warnings.warn(f"{printable_path(path)}: {count} skipped ({named}{more}); {action}",
                  DamagedMetricsWarning, stacklevel=3)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
