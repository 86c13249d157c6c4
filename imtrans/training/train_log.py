"""``<run>/train.log``: the run's plain-text log, the lines a terminal would have shown.

Progress lines (every ``train.print_every_seconds``) and every notice of the run (evaluation
scores, rollbacks, warnings) are appended with the time, so a run started under nohup, Slurm
or CI can be followed with ``tail -f runs/NAME/train.log``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from imtrans.core.observer import TrainingObserver
from imtrans.core.printable import printable_path
from imtrans.runs.file_access import LinkedRunFileError, append_text

__all__ = ["LoggedObserver", "TrainLog"]


class TrainLog:
    """Appends time-stamped lines to a file; a failure to write is never fatal to training."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failed = False

    def write(self, line: str) -> None:
        """Append ``line`` (opened and closed each time, so the file is complete after a kill)."""
        if self.failed:
            return
        stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        try:
            with append_text(self.path) as file:  # never through a link (imtrans.runs.file_access)
                file.write(f"{stamp}  {printable_path(line)}\n")  # file names not UTF-8
        except (OSError, LinkedRunFileError):  # a link: refused when the run started
            self.failed = True  # a full disk: the checkpoint's own error says it better


class LoggedObserver(TrainingObserver):
    """Passes everything to ``inner`` and copies notices and progress lines to ``log``."""

    def __init__(self, inner: TrainingObserver, log: TrainLog) -> None:
        self.inner, self.log = inner, log

    def message(self, text: str) -> None:
        self.log.write(text)
        self.inner.message(text)

    def on_start(self, **plan: int) -> None:
        self.inner.on_start(**plan)

    def on_step(self, step: int, epoch: int) -> None:
        self.inner.on_step(step, epoch)

    def on_status(self, status: Any) -> None:
        self.inner.on_status(status)

    def on_progress_line(self, line: str) -> None:
        self.log.write(line)
        self.inner.on_progress_line(line)

    def on_log(self, record: dict[str, Any]) -> None:
        self.inner.on_log(record)

    def on_stopping(self, reason: str) -> None:
        self.log.write(reason)
        self.inner.on_stopping(reason)

    def on_end(self) -> None:
        self.inner.on_end()
