"""The signals that stop training after the step under way, with a checkpoint to resume from.

Ctrl-C (SIGINT), a container's or scheduler's stop (SIGTERM), and a closed terminal or ssh
session (SIGHUP, whose default action would kill the run without saving). The training process
handles them for the length of its loop only (:class:`StopSignals`, through
:meth:`imtrans.core.distributed.Distributed.interrupts`), its loading processes ignore them
(:func:`imtrans.data.workers.prepare_worker`), and ``imtrans run --nproc`` passes SIGTERM and
SIGHUP on to torchrun. SIGHUP does not exist on Windows.

A program that trains in its own process (pytest, a notebook, a script) gets its handlers back
when training returns, and the stop reaches it as :class:`SignalInterrupted`: an
:class:`~imtrans.errors.TrainingInterrupted` that is also a ``KeyboardInterrupt``, so that
pytest ends the session instead of counting a failed test and going on to the next.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from imtrans.core.eta import Throughput
from imtrans.errors import TrainingInterrupted

__all__ = ["LONG_WAIT_SECONDS", "STOP_SIGNALS", "SignalInterrupted", "StopRequested",
           "StopSignals", "stop_notice"]

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))

#: The stop notice says how long the wait is from this many seconds on (shorter goes unsaid).
LONG_WAIT_SECONDS = 5.0


class StopRequested(Exception):
    """Raised after a complete step when a stop was asked for: the loop finishes the jobs
    (checkpoint, partial record, report) and reports how to resume."""


class SignalInterrupted(TrainingInterrupted, KeyboardInterrupt):
    """Training stopped after Ctrl-C, SIGTERM or SIGHUP (its message says what was saved).

    Also a ``KeyboardInterrupt``: the signal was meant for the whole program, not for one call
    of it. pytest re-raises a ``KeyboardInterrupt`` and ends the session where it would count
    any other exception as a failed test and run the next one; ``except ImtransError`` and
    ``except TrainingInterrupted`` still catch it.
    """


def stop_notice(signum: int, *, wait_seconds: float | None, stop_at_once: bool) -> str:
    """The line shown when a stop signal arrives.

    Args:
        signum: The signal.
        wait_seconds: The expected wait until the stop (said from :data:`LONG_WAIT_SECONDS`).
        stop_at_once: Whether a (second) Ctrl-C stops in the middle of the step.

    Example:
        >>> print(stop_notice(signal.SIGINT, wait_seconds=77.2, stop_at_once=True))
        ... # doctest: +NORMALIZE_WHITESPACE
        Ctrl-C: stopping after this step, with a checkpoint of it...
        (about 77 s; Ctrl-C again: stop at once, without it)
        >>> stop_notice(signal.SIGTERM, wait_seconds=0.4, stop_at_once=False)
        'SIGTERM: stopping after this step, with a checkpoint of it...'
    """
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    notes = []
    if wait_seconds is not None and wait_seconds >= LONG_WAIT_SECONDS:
        notes.append(f"about {_duration(wait_seconds)}")
    if stop_at_once:
        again = "Ctrl-C again" if signum == signal.SIGINT else "Ctrl-C"
        notes.append(f"{again}: stop at once, without it")
    tail = f" ({'; '.join(notes)})" if notes else ""
    return f"{name}: stopping after this step, with a checkpoint of it...{tail}"


def _duration(seconds: float) -> str:
    """``77 s``, ``12 min``, ``2.5 h``: as precise as a wait needs."""
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class StopSignals:
    """Turns the stop signals into a request to stop after the step under way, while
    :meth:`installed`.

    Raising at once would end the step half done (one network updated, not the other), and
    with several processes would leave the other ranks waiting at a gradient reduction this
    rank never joins; instead the loop reads :attr:`requested` once per step
    (:meth:`step_ended`) and stops there.

    Args:
        stop_at_once: A second Ctrl-C raises ``KeyboardInterrupt`` there and then: the way out
            of a step that takes too long, at the price of that step (one process only: with
            several, the others would wait for it at the next reduction).
        steps_to_agree: Steps after the one under way before the stop (several processes
            agree on the stop one step later), for the wait the notice announces.
        clock: Seconds of a monotonic clock (a test's fake one).
    """

    def __init__(self, *, stop_at_once: bool, steps_to_agree: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.requested = False
        self.stop_at_once, self.steps_to_agree, self.clock = stop_at_once, steps_to_agree, clock
        self._steps = Throughput(start_step=0, start_time=clock())
        self._ended = 0  # steps ended since the handlers were installed
        self._last_end = self._steps.start[0]

    def step_ended(self) -> None:
        """A step and its jobs ended (where the loop checks for a stop): the clock of the wait
        the notice announces, on the host, without any device sync."""
        self._ended += 1
        self._last_end = self.clock()
        self._steps.mark(self._ended, self._last_end)

    def expected_wait(self) -> float | None:
        """Seconds until the loop next checks for a stop (and the others, when several
        processes must agree), at the recent time per step; None before a step has ended."""
        per_step = self._steps.seconds_per_step()
        if per_step is None:
            return None
        return per_step * (1 + self.steps_to_agree) - (self.clock() - self._last_end)

    @contextlib.contextmanager
    def installed(self, on_request: Callable[[str], None] | None = None) -> Iterator[None]:
        """Handle the stop signals inside the ``with`` block; the handlers found are put back
        after it, also when it raises, and a nested block puts back this one's.

        ``on_request`` hears of the first signal at once, with the line to show
        (:func:`stop_notice`). Outside the main thread nothing is installed (Python handles
        signals there only): a signal then does what it did before training.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request(signum: int, frame: Any) -> None:
            if self.requested and signum == signal.SIGINT and self.stop_at_once:
                raise KeyboardInterrupt
            if self.requested:
                return
            self.requested = True
            if on_request is not None:
                on_request(stop_notice(signum, wait_seconds=self.expected_wait(),
                                       stop_at_once=self.stop_at_once))

        self._steps = Throughput(start_step=0, start_time=self.clock())
        self._ended, self._last_end = 0, self._steps.start[0]
        previous: dict[signal.Signals, Any] = {}
        try:
            for stop in STOP_SIGNALS:
                handler = signal.getsignal(stop)
                if handler is None:  # installed outside Python: it could not be put back
                    continue
                signal.signal(stop, request)
                previous[stop] = handler
            yield
        finally:
            for stop, handler in previous.items():
                signal.signal(stop, handler)
