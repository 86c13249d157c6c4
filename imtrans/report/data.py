"""Read what a run directory holds into plain data for the report, tolerating missing files.

Training may be writing while the report is built: the last line of ``metrics.jsonl`` can be
half-written, samples and checkpoints appear and disappear (kept-last pruning). Everything here
therefore treats an unreadable or malformed file as absent instead of failing the report.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from imtrans.core.jsonfile import loads_bounded
from imtrans.core.regular_files import open_regular_file, read_regular_file
from imtrans.errors import ImtransError
from imtrans.runs.directory import RunDir
from imtrans.runs.metrics_file import parse_record, read_metrics_lines, warn_damaged

__all__ = ["CheckpointEntry", "RunData", "Sample", "Series", "downsample", "read_run"]

_SAMPLE_FILE = re.compile(r"step_(\d+)\.png")
#: The largest recipe, environment or result file shown: each is a few KB when training wrote it.
_MAX_TEXT_BYTES = 16 << 20
# The checkpoint names of imtrans.runs.checkpoints.files (checkpoint_name, parse_checkpoint_name):
# ``step_<8+ digits>.safetensors`` mid-epoch, ``step_<8+ digits>_epoch_<4+ digits>.safetensors``
# as an epoch ends. Not imported from there: that module imports torch, three seconds that
# `imtrans report` would wait for; tests/test_report.py checks that the two agree.
_CHECKPOINT_FILE = re.compile(r"step_(\d{8,})(?:_epoch_(\d{4,}))?\.safetensors")


@dataclass
class Series:
    """One curve: values over training steps, in the order logged."""

    steps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, step: float, value: Any) -> None:
        # Non-finite values (a diverged loss) cannot be drawn; bools are not numbers here.
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            self.steps.append(step)
            self.values.append(float(value))


@dataclass
class Sample:
    """A sample grid under ``samples/``: its step, path relative to the run, PNG size, and the
    labels of its columns (from ``step_N.json``; None for grids written before labels)."""

    step: int
    href: str
    size: tuple[int, int] | None
    columns: list[str] | None = None


@dataclass
class CheckpointEntry:
    """A file under ``checkpoints/``: its step and, for one saved as an epoch ended, the
    epochs completed, both from its name (None for others, such as ``best.safetensors``)."""

    name: str
    step: int | None
    bytes: int
    epoch: int | None = None


@dataclass
class RunData:
    """Everything the report shows, read from one run directory."""

    name: str
    recipe_text: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] | None = None
    losses: dict[str, Series] = field(default_factory=dict)
    lr: Series = field(default_factory=Series)
    images_per_sec: Series = field(default_factory=Series)
    evals: dict[str, Series] = field(default_factory=dict)
    last_step: int | None = None
    last_epoch: int | None = None
    samples: list[Sample] = field(default_factory=list)
    checkpoints: list[CheckpointEntry] = field(default_factory=list)
    best: dict[str, Any] | None = None
    eval_results: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)

    @property
    def trainer(self) -> str | None:
        """The recipe's trainer name (``pix2pix``, ``cyclegan``...), if the recipe says."""
        table = self.recipe.get("trainer")
        return str(table["name"]) if isinstance(table, dict) and "name" in table else None


def read_run(run_dir: Path) -> RunData:
    """Read the recipe, environment, metrics, samples, checkpoints and evaluation results."""
    run = RunDir(run_dir)
    data = RunData(name=run_dir.name)
    data.recipe_text = _read_text(run.recipe)
    if data.recipe_text is not None:
        with contextlib.suppress(tomllib.TOMLDecodeError):  # the raw text is still shown
            data.recipe = tomllib.loads(data.recipe_text)
    data.environment = _read_json(run.environment)
    _read_metrics(run.metrics, data)
    data.samples = _read_samples(run)
    data.checkpoints = _read_checkpoints(run.checkpoints)
    data.best = _read_json(run.best_record)
    data.eval_results = [(p.name, _read_json(p)) for p in sorted(run.evaluations.glob("*.json"))]
    return data


def downsample(series: Series, max_points: int = 1000) -> tuple[Series, Series, Series]:
    """Bucket means (and each bucket's minimum and maximum) of at most ``max_points`` buckets.

    Consecutive points share a bucket, so a curve of 50 000 logged steps is drawn from 1000
    points while the min/max band still shows the spikes the means smooth away. A series that
    already fits is returned as it is (its band equals the curve).
    """
    count = len(series.values)
    if count <= max_points:
        return series, series, series
    mean, low, high = Series(), Series(), Series()
    for bucket in range(max_points):
        start, stop = count * bucket // max_points, count * (bucket + 1) // max_points
        steps, values = series.steps[start:stop], series.values[start:stop]
        step = sum(steps) / len(steps)
        mean.steps.append(step)
        mean.values.append(sum(values) / len(values))
        low.steps.append(step)
        low.values.append(min(values))
        high.steps.append(step)
        high.values.append(max(values))
    return mean, low, high


def _read_metrics(path: Path, data: RunData) -> None:
    records = _metrics_records(path)
    if not records:
        return
    # A resumed run truncates the log at its checkpoint, so steps normally ascend; sorting
    # (stable, linear when already sorted) keeps a hand-merged log drawable all the same.
    records.sort(key=itemgetter("step"))
    # Long runs log hundreds of thousands of values: columns are built by comprehensions
    # (faster than appending point by point) and gaps are dropped afterwards.
    train = [r for r in records if isinstance(r.get("losses"), dict)]
    if train:
        steps = [r["step"] for r in train]
        data.last_step = steps[-1]
        epochs = [r["epoch"] for r in train if isinstance(r.get("epoch"), int)]
        data.last_epoch = epochs[-1] if epochs else None
        for name in _keys(r["losses"] for r in train):
            data.losses[str(name)] = _drawable(steps, [r["losses"].get(name) for r in train])
        data.lr = _drawable(steps, [r.get("lr") for r in train])
        data.images_per_sec = _drawable(steps, [r.get("images_per_sec") for r in train])
    evals = [r for r in records if isinstance(r.get("eval"), dict)]
    for name in _keys(r["eval"] for r in evals):
        data.evals[str(name)] = _drawable([r["step"] for r in evals],
                                          [r["eval"].get(name) for r in evals])


def _keys(tables: Iterable[dict[str, Any]]) -> list[str]:
    """Every key of ``tables``, in order of first appearance."""
    seen: dict[str, None] = {}
    for table in tables:
        if not table.keys() <= seen.keys():
            seen.update(dict.fromkeys(table))
    return list(seen)


def _metrics_records(path: Path) -> list[dict[str, Any]]:
    """The usable records of ``metrics.jsonl``; damaged lines are skipped with one warning
    (:mod:`imtrans.runs.metrics_file`), and the line training may be writing is left out."""
    try:  # a FIFO in its place would block the report: only a regular file is read
        with open_regular_file(path, what="metrics file") as handle:
            data = handle.read()
    except (OSError, ImtransError):
        return []
    lines = [line for line in data.split(b"\n") if line.strip()]
    try:  # one parse of the whole log is much faster than one per line
        records = json.loads(b"[" + b",".join(lines[:-1]) + b"]")
    except (ValueError, RecursionError):  # ValueError: UnicodeDecodeError too
        records = None
    last, _ = parse_record(lines[-1]) if lines else (None, None)
    torn = not data.endswith(b"\n")  # a last line without its newline may be half-written
    if (isinstance(records, list) and len(records) == len(lines) - 1
            and all(isinstance(r, dict) and type(r.get("step")) is int and r["step"] >= 0
                    for r in records) and (last is not None or torn or not lines)):
        return records + ([last] if last is not None else [])
    parsed = list(read_metrics_lines(path))  # a damaged line: find it, and say which
    warn_damaged(path, parsed, "the report leaves them out")
    return [line.record for line in parsed if line.record is not None]


def _drawable(steps: list[float], values: list[Any]) -> Series:
    """The points whose value is a finite number: a diverged (NaN) loss cannot be drawn."""
    try:  # the usual case, every value a finite number, checked at C speed
        if math.isfinite(math.fsum(values)):
            return Series(list(steps), [float(v) for v in values])
    except (TypeError, OverflowError):
        pass
    kept = Series()
    for step, value in zip(steps, values, strict=True):
        kept.add(step, value)
    return kept


def _read_samples(run: RunDir) -> list[Sample]:
    samples = []
    for path in run.samples.glob("step_*.png"):
        match = _SAMPLE_FILE.fullmatch(path.name)
        if match:
            href = path.relative_to(run.root).as_posix()
            samples.append(Sample(int(match.group(1)), href, _png_size(path),
                                  _read_labels(path.with_suffix(".json"))))
    # By step as a number: step_100000000.png (nine digits) comes after step_99999999.png.
    return sorted(samples, key=lambda s: (s.step, s.href))


def _read_labels(path: Path) -> list[str] | None:
    """The column labels of a grid (``{"columns": [...]}``), or None when absent or malformed."""
    found = _read_json(path)
    columns = found.get("columns") if found else None
    if isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns):
        return columns
    return None


def _read_checkpoints(folder: Path) -> list[CheckpointEntry]:
    found = []
    for path in folder.glob("*.safetensors"):
        try:
            size = path.stat().st_size
        except OSError:
            continue  # pruned by the training loop between glob and stat
        match = _CHECKPOINT_FILE.fullmatch(path.name)
        step = int(match[1]) if match else None
        epoch = int(match[2]) if match and match[2] is not None else None
        found.append(CheckpointEntry(path.name, step, size, epoch))
    # Step checkpoints by step as a number, then the others (best.safetensors...) by name.
    return sorted(found, key=lambda c: (c.step is None, c.step or 0, c.name))


def _png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the PNG header (no image library, no full decode)."""
    try:
        with open_regular_file(path, what="sample") as file:
            head = file.read(24)
    except (OSError, ImtransError):
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _read_text(path: Path) -> str | None:
    """The text of a small regular file of the run; None when it is missing, too large or not
    a regular file (a FIFO would block the report, a device never end)."""
    try:
        data = read_regular_file(path, what="run file", max_bytes=_MAX_TEXT_BYTES)
    except ImtransError:
        return None
    return data.decode("utf-8", errors="replace")


def _read_json(path: Path) -> dict[str, Any] | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        value = loads_bounded(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
