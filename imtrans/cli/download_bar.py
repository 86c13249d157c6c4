"""The progress bar of the download commands (``imtrans data download``, ``models download``).

Example:
    >>> with download_bar(console, "facades", 30_000_000,
    ...                   {"download": "downloading"}) as bar:  # doctest: +SKIP
    ...     fetch(progress=bar.on_bytes, on_stage=bar.on_stage)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["DownloadBar", "download_bar"]


class DownloadBar:
    """Callbacks that move one download's bar: bytes as they arrive, and the stage's name."""

    def __init__(self, progress: Progress, task: TaskID, name: str,
                 stages: Mapping[str, str], complete: str | None) -> None:
        self._progress, self._task, self._name = progress, task, name
        self._stages, self._complete = stages, complete

    def on_stage(self, stage: str) -> None:
        """Show the stage (``download``, ``extract``...) by its name in ``stages``."""
        self._describe(self._stages.get(stage, stage))

    def on_bytes(self, done: int, total: int | None) -> None:
        """Show ``done`` of ``total`` bytes (and the ``complete`` text once all arrived)."""
        self._progress.update(self._task, completed=done, total=total)
        if self._complete is not None and total is not None and done >= total:
            self._describe(self._complete)

    def _describe(self, text: str) -> None:
        self._progress.update(self._task, description=f"{self._name}: {text}")


@contextmanager
def download_bar(console: Console, name: str, total: int | None, stages: Mapping[str, str],
                 complete: str | None = None) -> Iterator[DownloadBar]:
    """A transient bar for downloading ``name`` (``total`` bytes, when known)."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{name}: waiting", total=total)
        yield DownloadBar(progress, task, name, stages, complete)
