"""How far a run is and how long it will take: the one estimate the progress bar, the plain
progress lines and ``<run>/train.log`` all show.

The estimate is made on the host from the times steps end, so it costs no device sync. On a GPU
the host runs a few steps ahead of the device at first and the early figures are a little
optimistic; after that the queue is full and host and device advance at the same rate.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ProgressStatus", "Throughput", "format_duration", "format_speed"]


class Throughput:
    """Seconds per step from the end times of recent steps.

    The first step pays for warm-up (allocation, compilation, the loading processes starting),
    so once two steps have ended it is measured between step ends only. Older marks than
    ``window_seconds`` are dropped, so the rate follows a run whose speed changes (another job
    on the GPU, an evaluation pause) instead of averaging over hours.

    Example:
        >>> clock = Throughput(start_step=0, start_time=0.0)
        >>> clock.mark(1, 10.0)  # the first step took 10 s (warm-up)
        >>> clock.seconds_per_step()
        10.0
        >>> clock.mark(2, 12.0); clock.mark(3, 14.0)
        >>> clock.seconds_per_step()
        2.0
        >>> clock.eta_seconds(step=3, total=10)
        14.0
    """

    def __init__(self, *, start_step: int, start_time: float,
                 window_seconds: float = 600.0) -> None:
        self.start = (start_time, start_step)
        self.window_seconds = window_seconds
        self.marks: collections.deque[tuple[float, int]] = collections.deque()

    def mark(self, step: int, now: float) -> None:
        """Record that ``step`` ended at ``now`` (seconds, any monotonic clock)."""
        self.marks.append((now, step))
        while len(self.marks) > 2 and now - self.marks[1][0] > self.window_seconds:
            self.marks.popleft()

    def seconds_per_step(self) -> float | None:
        """The recent seconds per step; None before the first step has ended."""
        if not self.marks:
            return None
        (t0, s0), (t1, s1) = (self.marks[0], self.marks[-1]) if len(self.marks) > 1 else (
            self.start, self.marks[0])
        return (t1 - t0) / (s1 - s0) if s1 > s0 else None

    def eta_seconds(self, *, step: int, total: int) -> float | None:
        """Seconds until ``total`` steps at the recent rate; None before there is a rate."""
        rate = self.seconds_per_step()
        return None if rate is None else max(total - step, 0) * rate


@dataclass(frozen=True)
class ProgressStatus:
    """Where a run is after a step: what a progress display shows.

    Attributes:
        step: Steps done (global).
        total_steps: Steps of the whole run.
        epoch: The current epoch, from 1.
        epochs: Epochs of the schedule.
        images_per_sec: Images per second over the recent steps (None before a rate exists).
        eta_seconds: Estimated seconds to the end (None likewise).
        losses: The loss terms of the latest metrics record (empty before the first).
        images_per_step: Images per step over all processes (the global batch).
    """

    step: int
    total_steps: int
    epoch: int
    epochs: int
    images_per_sec: float | None
    eta_seconds: float | None
    losses: Mapping[str, float] = field(default_factory=dict)
    images_per_step: int = 1

    @property
    def speed(self) -> str:
        """``12.3 img/s``, or ``4.2 s/step`` when slower than one image per second."""
        return format_speed(self.images_per_sec, self.images_per_step)

    @property
    def eta(self) -> str:
        """The ETA as ``H:MM:SS`` (``-`` before there is a rate)."""
        return "-" if self.eta_seconds is None else format_duration(self.eta_seconds)

    @property
    def loss_text(self) -> str:
        """``G 1.23  D_A 0.251 ...`` (three significant figures each)."""
        return "  ".join(f"{name} {value:.3g}" for name, value in self.losses.items())

    def line(self) -> str:
        """One plain progress line: step, epoch, speed, ETA and losses."""
        percent = 100 * self.step / max(self.total_steps, 1)
        parts = [f"step {self.step}/{self.total_steps} ({percent:.0f}%)",
                 f"epoch {self.epoch}/{self.epochs}", self.speed or "- img/s",
                 f"eta {self.eta}"]
        return "  ".join(parts + ([self.loss_text] if self.losses else []))


def format_speed(images_per_sec: float | None, images_per_step: float = 1.0) -> str:
    """Images per second, or seconds per step below one image per second ("" without a rate).

    >>> format_speed(12.345), format_speed(0.25, images_per_step=1), format_speed(None)
    ('12.3 img/s', '4.0 s/step', '')
    """
    if images_per_sec is None or images_per_sec <= 0:
        return ""
    if images_per_sec >= 1:
        return f"{images_per_sec:.1f} img/s"
    return f"{images_per_step / images_per_sec:.1f} s/step"


def format_duration(seconds: float) -> str:
    """``H:MM:SS``, with days in front past 24 hours.

    >>> format_duration(59.6), format_duration(3725), format_duration(90000)
    ('0:01:00', '1:02:05', '1d 1:00:00')
    """
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock
