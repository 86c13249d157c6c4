"""The progress display of ``imtrans run``: a :class:`~imtrans.core.observer.TrainingObserver`
on a rich console.

On a terminal, a live bar shows the epoch, step, speed (images/s, or s/step when slower than
one image a second), the ETA and the latest losses, all from the engine's own estimate
(:mod:`imtrans.core.eta`), so they appear after the first step. On a narrow terminal the
losses keep their room: the bar graphic, the elapsed time and the epoch give way first
(:func:`fit_line`), and then whole loss terms from the end. Notices wrap between words.
Elsewhere (a file, nohup, Slurm, CI) there is no bar: the engine's plain progress lines are
printed instead, one every ``train.print_every_seconds``, and lines are never wrapped.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NamedTuple

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from imtrans.core.eta import ProgressStatus
from imtrans.core.observer import TrainingObserver

__all__ = ["Layout", "RichProgress", "fit_line"]

_BAR_WIDTH = 20
#: The separator of loss terms in :attr:`ProgressStatus.loss_text`.
_TERMS = "  "


class Layout(NamedTuple):
    """Which of the columns that can give way the bar shows."""

    bar: bool = True
    elapsed: bool = True
    epoch: bool = True

    def columns(self) -> list[ProgressColumn]:
        """The bar's columns in this layout."""
        columns: list[ProgressColumn] = []
        if self.epoch:
            columns.append(TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"))
        if self.bar:
            columns.append(BarColumn(bar_width=_BAR_WIDTH))
        columns += [MofNCompleteColumn(), TextColumn("{task.fields[speed]}")]
        if self.elapsed:
            columns.append(TimeElapsedColumn())
        return [*columns, TextColumn("eta {task.fields[eta]}"), TextColumn("{task.fields[losses]}")]

    def width_before_losses(self, status: ProgressStatus, elapsed: float) -> int:
        """The columns' width before the losses, each with the space after it."""
        total = str(status.total_steps)
        shown = [f"{total}/{total}", status.speed, f"eta {status.eta}"]
        if self.epoch:
            shown.append(f"epoch {status.epoch}/{status.epochs}")
        if self.bar:
            shown.append("x" * _BAR_WIDTH)
        if self.elapsed:  # one more character, for when the hours gain a digit
            shown.append(str(timedelta(seconds=int(elapsed))) + " ")
        return sum(len(text) + 1 for text in shown)


#: From the widest to the narrowest: what gives way before any loss term does.
LAYOUTS = (Layout(), Layout(bar=False), Layout(bar=False, elapsed=False),
           Layout(bar=False, elapsed=False, epoch=False))


def fit_line(status: ProgressStatus, width: int, elapsed: float = 0.0) -> tuple[Layout, str]:
    """The widest layout that leaves room for every loss term on a ``width``-column line,
    and the losses as they fit: in the narrowest, whole terms from the end give way to ``…``
    (never a term cut in two, never the step, speed or ETA, which rich would squeeze).

    Example:
        >>> from imtrans.core.eta import ProgressStatus
        >>> status = ProgressStatus(step=5, total_steps=100, epoch=1, epochs=2,
        ...                         images_per_sec=2.0, eta_seconds=60.0,
        ...                         losses={"G": 1.5, "D": 0.25, "cycle": 8.0})
        >>> fit_line(status, 120)
        (Layout(bar=True, elapsed=True, epoch=True), 'G 1.5  D 0.25  cycle 8')
        >>> fit_line(status, 62)
        (Layout(bar=False, elapsed=False, epoch=True), 'G 1.5 D 0.25 cycle 8')
        >>> fit_line(status, 50)
        (Layout(bar=False, elapsed=False, epoch=False), 'G 1.5 D 0.25 …')
    """
    terms = [term for term in status.loss_text.split(_TERMS) if term]
    for layout in LAYOUTS:
        room = width - layout.width_before_losses(status, elapsed) - 1  # rich keeps one free
        text = (_TERMS if layout == LAYOUTS[0] else " ").join(terms)
        if len(text) <= room:
            return layout, text
    kept: list[str] = []
    for term in terms:
        if len(" ".join([*kept, term, "…"])) > room:
            break
        kept.append(term)
    return LAYOUTS[-1], " ".join([*kept, "…"])


class RichProgress(TrainingObserver):
    """Shows training progress on a rich console: a live bar on a terminal, lines elsewhere."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.layout = LAYOUTS[0]
        self.progress = Progress(
            *self.layout.columns(),
            console=self.console,
            transient=False,
            disable=not self.live,
        )
        self.task: Any = None

    def message(self, text: str) -> None:
        # On a terminal, between words (the terminal itself would cut them anywhere); in a
        # file, whole lines for grep.
        self.progress.console.print(Text(text), highlight=False, soft_wrap=not self.live)

    def on_start(self, *, total_steps: int, start_step: int, steps_per_epoch: int,
                 epochs: int, images_per_step: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step,
                                           epoch=start_step // steps_per_epoch + 1,
                                           epochs=epochs, speed="", eta="-", losses="")

    def on_status(self, status: ProgressStatus) -> None:
        task = self.progress.tasks[0] if self.progress.tasks else None
        layout, losses = fit_line(status, self.console.width,
                                  (task.elapsed or 0.0) if task is not None else 0.0)
        if layout != self.layout:  # the terminal is narrower (or was resized)
            self.layout, self.progress.columns = layout, tuple(layout.columns())
        self.progress.update(self.task, completed=status.step, epoch=status.epoch,
                             speed=status.speed, eta=status.eta, losses=losses)

    def on_progress_line(self, line: str) -> None:
        if not self.live:  # on a terminal the bar shows the same, live
            self.message(line)

    def on_stopping(self, reason: str) -> None:
        self.message(reason)

    def on_end(self) -> None:
        self.progress.stop()
