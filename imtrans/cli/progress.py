"""The progress bar of ``imtrans run``: a :class:`~imtrans.engine.observer.TrainingObserver`
that shows the epoch, step, images/s, ETA and the latest losses on a rich console.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from imtrans.engine.observer import TrainingObserver

__all__ = ["RichProgress"]


class RichProgress(TrainingObserver):
    """Shows training progress on a rich console (a live bar on terminals)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=self.console,
            transient=False,
        )
        self.task: Any = None
        self.epochs = 0

    def message(self, text: str) -> None:
        self.progress.console.print(Text(text), highlight=False)

    def on_start(self, *, total_steps: int, start_step: int, steps_per_epoch: int,
                 epochs: int, images_per_step: int) -> None:
        self.epochs = epochs
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step,
                                           epoch=start_step // steps_per_epoch + 1,
                                           epochs=epochs, speed="", losses="")

    def on_step(self, step: int, epoch: int) -> None:
        self.progress.update(self.task, completed=step, epoch=epoch + 1)

    def on_log(self, record: dict[str, Any]) -> None:
        losses = "  ".join(f"{k} {v:.3g}" for k, v in record["losses"].items())
        self.progress.update(self.task, speed=f"{record['images_per_sec']:.1f} img/s",
                             losses=losses)

    def on_end(self) -> None:
        self.progress.stop()
