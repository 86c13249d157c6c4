"""The suite's global deadline: a run starts only when the time it needs is left.

A run cannot be stopped half way (a compilation in progress, a CUDA graph being recorded), so
the deadline is kept by not starting what would overrun: each run states the seconds it is
expected to take, and is skipped, with a JSON line saying so, when fewer are left.

Example:
    >>> deadline = Deadline(60.0)
    >>> deadline.refusal(10.0) is None
    True
    >>> Deadline(0.0).refusal(10.0)
    'deadline: 0 s of the 0 s budget left, this run needs about 10 s'
"""

from __future__ import annotations

import time

__all__ = ["Deadline"]


class Deadline:
    """A time budget that started when this object was made.

    Args:
        budget_s: Seconds the whole suite may take.
    """

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.started = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return time.monotonic() - self.started

    def left(self) -> float:
        """Seconds of the budget left (0 when spent)."""
        return max(0.0, self.budget_s - self.elapsed())

    def refusal(self, needs_s: float) -> str | None:
        """Why a run expected to take ``needs_s`` seconds may not start (None: it may).

        A run needing 0 s still needs some time left: a spent budget refuses everything.
        """
        left = self.left()
        if left > 0 and left >= needs_s:
            return None
        return (f"deadline: {left:.0f} s of the {self.budget_s:.0f} s budget left, this run "
                f"needs about {needs_s:.0f} s")
