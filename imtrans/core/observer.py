"""What the fit loop tells the outside world: a small interface the CLI implements with rich,
and that a notebook or another program can implement too."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imtrans.core.eta import ProgressStatus

__all__ = ["ForwardingObserver", "TrainingObserver"]


class TrainingObserver:
    """Receives progress from :func:`imtrans.train`; every method is optional.

    The loop never prints; a program that wants output subclasses this and overrides what it
    needs. Calls come from the training loop's thread, between steps, so a slow method slows
    training: keep the per-step ones (:meth:`on_step`, :meth:`on_status`) cheap.
    Values arrive already read from the device; an observer never causes a sync.

    Example:
        >>> class Losses(TrainingObserver):
        ...     def __init__(self):
        ...         self.history = []
        ...     def on_log(self, record):
        ...         self.history.append((record["step"], record["losses"]["G"]))
    """

    def message(self, text: str) -> None:
        """A one-line notice for the user (data fallback, device choice, where files went)."""

    def on_start(self, *, total_steps: int, start_step: int, steps_per_epoch: int,
                 epochs: int, images_per_step: int) -> None:
        """Training is about to start (``start_step`` > 0 when resuming)."""

    def on_step(self, step: int, epoch: int) -> None:
        """A step finished (cheap: called every step, must not block)."""

    def on_status(self, status: ProgressStatus) -> None:
        """After every step: speed, ETA and the latest losses (for a live display)."""

    def on_progress_line(self, line: str) -> None:
        """A plain progress line, every ``train.print_every_seconds`` and at the first step
        (for logs; a live display that shows :meth:`on_status` can ignore it)."""

    def on_log(self, record: dict[str, Any]) -> None:
        """A metrics record was written (losses, images/s, learning rate)."""

    def on_stopping(self, reason: str) -> None:
        """Ctrl-C or SIGTERM arrived: the run stops after the current step (``reason`` says
        so in a line). Called from the signal handler: must return at once."""

    def on_end(self) -> None:
        """Training ended (finished, interrupted or failed)."""


class ForwardingObserver(TrainingObserver):
    """Passes every call to ``inner``: a base for an observer that adds to some calls (copies
    them to a log, keeps them for later) and overrides only those.

    Args:
        inner: The observer that receives everything.
    """

    def __init__(self, inner: TrainingObserver) -> None:
        self.inner = inner

    def message(self, text: str) -> None:
        self.inner.message(text)

    def on_start(self, **plan: int) -> None:
        self.inner.on_start(**plan)

    def on_step(self, step: int, epoch: int) -> None:
        self.inner.on_step(step, epoch)

    def on_status(self, status: ProgressStatus) -> None:
        self.inner.on_status(status)

    def on_progress_line(self, line: str) -> None:
        self.inner.on_progress_line(line)

    def on_log(self, record: dict[str, Any]) -> None:
        self.inner.on_log(record)

    def on_stopping(self, reason: str) -> None:
        self.inner.on_stopping(reason)

    def on_end(self) -> None:
        self.inner.on_end()
