"""What the fit loop tells the outside world: a small interface the CLI implements with rich."""

from __future__ import annotations

from typing import Any

__all__ = ["TrainingObserver"]


class TrainingObserver:
    """Receives progress from :func:`imtrans.engine.loop.fit`; every method is optional.

    The loop never prints; a program that wants output subclasses this.
    """

    def message(self, text: str) -> None:
        """A one-line notice for the user (data fallback, device choice, where files went)."""

    def on_start(self, *, total_steps: int, start_step: int, steps_per_epoch: int,
                 epochs: int, images_per_step: int) -> None:
        """Training is about to start (``start_step`` > 0 when resuming)."""

    def on_step(self, step: int, epoch: int) -> None:
        """A step finished (cheap: called every step, must not block)."""

    def on_log(self, record: dict[str, Any]) -> None:
        """A metrics record was written (losses, images/s, learning rate)."""

    def on_end(self) -> None:
        """Training ended (finished, interrupted or failed)."""
