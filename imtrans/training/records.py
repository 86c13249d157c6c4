"""What a run writes as it goes: its records, and the one place they go.

- :class:`LossMeter` sums the steps' loss tensors on the device and reads them back once per
  logging interval, one transfer for all terms: no device sync per step. A progress line
  peeks at the sums between records (one transfer per line) without resetting them.
- :class:`MetricsLog` appends records to ``metrics.jsonl`` (what the report, resume and the
  tests read) and cuts it back to a checkpoint's step on a resume.
- :class:`RunLog` is the one place jobs write records: ``metrics.jsonl`` plus every tracker of
  the recipe's ``[log]`` (:class:`imtrans.core.contracts.MetricsLogger`), as scalars
  ``loss/<term>``, ``lr``, ``images_per_sec``, ``data_wait_fraction``, ``eval/<metric>``. The
  values are the ones the record already read from the device; a tracker never causes a read
  of its own. A tracker that fails is switched off with a warning: a run is worth more than
  one of its copies.
- :class:`TrainLog` is ``<run>/train.log``, the lines a terminal would have shown: progress
  lines (every ``train.print_every_seconds``) and every notice of the run (evaluation scores,
  rollbacks, warnings) with the time, so a run started under nohup, Slurm or CI can be
  followed with ``tail -f runs/NAME/train.log``; :class:`LoggedObserver` sends an observer's
  lines there too, after the notices said before the run directory existed, which
  :class:`RunNotices` keeps (the bundled-sample fallback, the device chosen); after the run,
  the closing lines of ``imtrans run`` (finished, interrupted, the summary) go there too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imtrans.core.atomic import atomic_write
from imtrans.core.components import Components
from imtrans.core.contracts import MetricsLogger
from imtrans.core.observer import ForwardingObserver, TrainingObserver
from imtrans.core.printable import printable_path
from imtrans.errors import ImtransError
from imtrans.recipe.schema import Recipe
from imtrans.runs.file_access import LinkedRunFileError, append_text
from imtrans.runs.metrics_file import read_metrics_lines, warn_damaged

__all__ = ["LoggedObserver", "LossMeter", "MetricsLog", "RunLog", "RunNotices", "TrainLog",
           "open_trackers", "scalars_of"]


class LossMeter:
    """Running sums of named loss tensors, kept on their device until :meth:`flush`.

    Attributes:
        windows: How many times the sums were flushed: a reader of :meth:`peek` sees by it
            that the sums started again since its last look.
        flushed: The sums and the step count the last flush emptied (as read back then).
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._count = 0
        self.windows = 0
        self.flushed: tuple[dict[str, float], int] = ({}, 0)

    def add(self, losses: dict[str, Tensor]) -> None:
        """Add one step's losses (device tensors; nothing is read back)."""
        for key, value in losses.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value.clone()
        self._count += 1

    def peek(self) -> tuple[dict[str, float], int]:
        """The sum of each loss since the last flush, and how many steps it holds, read back
        in one transfer; nothing is reset (the window of the metrics record goes on)."""
        if not self._count:
            return {}, 0
        keys = list(self._sums)
        sums = torch.stack([self._sums[k].float() for k in keys]).tolist()
        return dict(zip(keys, sums, strict=True)), self._count

    def flush(self) -> dict[str, float]:
        """The mean of each loss since the last flush, read back in one transfer."""
        self.windows += 1
        if not self._count:
            self.flushed = ({}, 0)
            return {}
        keys, count = list(self._sums), self._count
        means = (torch.stack([self._sums[k].float() for k in keys]) / count).tolist()
        self._sums.clear()
        self._count = 0
        self.flushed = ({key: mean * count for key, mean in zip(keys, means, strict=True)},
                        count)
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


class RunLog(MetricsLog):
    """``metrics.jsonl`` plus the trackers.

    Args:
        path: The run's ``metrics.jsonl``.
        trackers: ``(name, logger)`` pairs, from :func:`open_trackers`.
        observer: Told when a tracker fails.
    """

    def __init__(self, path: Path, trackers: Sequence[tuple[str, MetricsLogger]] = (),
                 observer: TrainingObserver | None = None) -> None:
        super().__init__(path)
        self.trackers = dict(trackers)
        self.observer = observer or TrainingObserver()

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` to ``metrics.jsonl`` and send its numbers to the trackers."""
        super().write(record)
        scalars = scalars_of(record)
        if scalars:
            self._each(lambda logger: logger.log_scalars(int(record["step"]), scalars))

    def hyperparameters(self, resolved_recipe: Mapping[str, Any]) -> None:
        """Send the resolved recipe to the trackers (once, at the start)."""
        self._each(lambda logger: logger.log_hyperparameters(resolved_recipe))

    def image(self, step: int, name: str, path: Path) -> None:
        """Send an image file (a sample grid) to the trackers."""
        self._each(lambda logger: logger.log_image(step, name, path))

    def close(self) -> None:
        """Close every tracker (safe to call twice)."""
        trackers, self.trackers = self.trackers, {}
        for name, logger in trackers.items():
            try:
                logger.close()
            except Exception as exc:  # closing one must not stop the others closing
                self.observer.message(f"warning: the {name} logger failed to close: "
                                      f"{type(exc).__name__}: {exc}")

    def _each(self, call: Callable[[MetricsLogger], None]) -> None:
        for name, logger in list(self.trackers.items()):
            try:
                call(logger)
            except Exception as exc:  # a tracker's outage must not end the run
                del self.trackers[name]
                self.observer.message(f"warning: the {name} logger failed and is off for the "
                                      f"rest of the run: {type(exc).__name__}: {exc}")


def scalars_of(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a metrics record, under the names trackers receive them.

    >>> scalars_of({"step": 5, "epoch": 1, "lr": 2e-4, "images_per_sec": 3.5,
    ...             "losses": {"G": 1.5}, "eval": {"fid": 80.0}})
    {'lr': 0.0002, 'images_per_sec': 3.5, 'loss/G': 1.5, 'eval/fid': 80.0}
    """
    scalars = {key: float(record[key]) for key in ("lr", "images_per_sec", "data_wait_fraction")
               if isinstance(record.get(key), int | float)}
    for group, prefix in (("losses", "loss"), ("eval", "eval")):
        for name, value in (record.get(group) or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                scalars[f"{prefix}/{name}"] = float(value)
    return scalars


def open_trackers(recipe: Recipe, registry: Components, run_dir: Path
                  ) -> list[tuple[str, MetricsLogger]]:
    """Build the recipe's logger backends (``[log] backends``) for ``run_dir``.

    Raises:
        ImtransError: a backend cannot start (its package is missing: the message names the
            extra to install). Backends already started are closed first.
    """
    opened: list[tuple[str, MetricsLogger]] = []
    try:
        for name in recipe.log.trackers:
            opened.append((name, _start(registry, name, recipe.log.options(name), run_dir)))
    except BaseException:
        for _, logger in opened:
            logger.close()
        raise
    return opened


def _start(registry: Components, name: str, options: dict[str, Any], run_dir: Path
           ) -> MetricsLogger:
    """Build one backend; a plugin's unexpected exception becomes an error naming it."""
    try:
        logger: MetricsLogger = registry.loggers.create(name, f"[log.{name}]",
                                                        run_dir=run_dir, **options)
    except ImtransError:
        raise
    except Exception as exc:
        raise ImtransError(f"the {name} logger failed to start: "
                           f"{type(exc).__name__}: {exc}") from exc
    return logger


class TrainLog:
    """Appends time-stamped lines to a file; a failure to write is never fatal to training."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failed = False

    def write(self, line: str, at: datetime | None = None) -> None:
        """Append ``line``, stamped with the time ``at`` (default: now); the file is opened
        and closed each time, so it is complete after a kill."""
        if self.failed:
            return
        stamp = (at or datetime.now()).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        try:
            with append_text(self.path) as file:  # never through a link (imtrans.runs.file_access)
                file.write(f"{stamp}  {printable_path(line)}\n")  # file names not UTF-8
        except (OSError, LinkedRunFileError):  # a link: refused when the run started
            self.failed = True  # a full disk: the checkpoint's own error says it better


class RunNotices(ForwardingObserver):
    """Passes everything to ``inner``, and puts the notices around a run in its ``train.log``.

    The notices said before the run directory exists (the bundled-sample fallback, the
    device chosen) are kept with their times, and go to ``train.log`` first when the run
    opens it (:class:`LoggedObserver` hands them over); after the run, :meth:`say` prints the
    closing lines (finished, interrupted, the summary) and appends them there too, and
    :meth:`record` appends the error that ended it, which the command prints itself.
    """

    def __init__(self, inner: TrainingObserver) -> None:
        super().__init__(inner)
        self.kept: list[tuple[datetime, str]] = []
        self.log: TrainLog | None = None  # the run's, once it is open

    def message(self, text: str) -> None:
        if self.log is None:
            self.kept.append((datetime.now(), text))
        self.inner.message(text)

    def hand_over(self, log: TrainLog) -> None:
        """The run's ``train.log`` is open: write the notices kept so far to it."""
        for at, text in self.kept:
            log.write(text, at)
        self.kept, self.log = [], log

    def record(self, text: str) -> None:
        """A line for the run's ``train.log`` only (one the caller prints its own way, such
        as the error that ends the run)."""
        if self.log is not None:
            self.log.write(text)

    def say(self, text: str) -> None:
        """A notice after the run: printed, and appended to the run's ``train.log`` (when
        the run opened one)."""
        if self.log is not None:
            self.log.write(text)
        self.inner.message(text)


class LoggedObserver(ForwardingObserver):
    """Passes everything to ``inner`` and copies notices and progress lines to ``log``; when
    ``inner`` kept the notices of the start (:class:`RunNotices`), they go first."""

    def __init__(self, inner: TrainingObserver, log: TrainLog) -> None:
        super().__init__(inner)
        self.log = log
        if isinstance(inner, RunNotices):
            inner.hand_over(log)

    def message(self, text: str) -> None:
        self.log.write(text)
        self.inner.message(text)

    def on_progress_line(self, line: str) -> None:
        self.log.write(line)
        self.inner.on_progress_line(line)

    def on_stopping(self, reason: str) -> None:
        self.log.write(reason)
        self.inner.on_stopping(reason)
