"""The progress display of ``imtrans run``: a :class:`~imtrans.core.observer.TrainingObserver`
on a rich console.

On a terminal, a live bar shows the epoch, step, speed (images/s, or s/step when slower than
one image a second), the ETA and the latest losses, all from the engine's own estimate
(:mod:`imtrans.core.eta`), so they appear after the first step. Elsewhere (a file,
nohup, Slurm, CI) there is no bar: the engine's plain progress lines are printed instead,
one every ``train.print_every_seconds``.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from imtrans.core.eta import ProgressStatus
from imtrans.core.observer import TrainingObserver

__all__ = ["RichProgress"]

_BAR_WIDTH = 20


class RichProgress(TrainingObserver):
    """Shows training progress on a rich console: a live bar on a terminal, lines elsewhere."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(bar_width=_BAR_WIDTH),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("eta {task.fields[eta]}"),
            TextColumn("{task.fields[losses]}"),
            console=self.console,
            transient=False,
            disable=not self.live,
        )
        self.task: Any = None

    def message(self, text: str) -> None:
        self.progress.console.print(Text(text), highlight=False)

    def on_start(self, *, total_steps: int, start_step: int, steps_per_epoch: int,
                 epochs: int, images_per_step: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step,
                                           epoch=start_step // steps_per_epoch + 1,
                                           epochs=epochs, speed="", eta="-", losses="")

    def on_status(self, status: ProgressStatus) -> None:
        self.progress.update(self.task, completed=status.step, epoch=status.epoch,
                             speed=status.speed, eta=status.eta, losses=self._fit(status))

    def _fit(self, status: ProgressStatus) -> str:
        """The losses, cut to the room the other columns leave: on a narrow terminal they
        give way, never the step, speed or ETA (which rich would squeeze otherwise)."""
        total = str(status.total_steps)
        others = (f"epoch {status.epoch}/{status.epochs} {'x' * _BAR_WIDTH} "
                  f"{total}/{total} {status.speed} 0:00:00 eta {status.eta} ")
        room = self.console.width - len(others) - 1
        text = status.loss_text
        return text if len(text) <= room else text[:max(room - 1, 0)] + "…"

    def on_progress_line(self, line: str) -> None:
        if not self.live:  # on a terminal the bar shows the same, live
            self.message(line)

    def on_stopping(self, reason: str) -> None:
        self.message(reason)

    def on_end(self) -> None:
        self.progress.stop()
