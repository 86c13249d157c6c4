"""The signals that stop training after the step under way, with a checkpoint to resume from.

Ctrl-C (SIGINT), a container's or scheduler's stop (SIGTERM), and a closed terminal or ssh
session (SIGHUP, whose default action would kill the run without saving). The training process
handles them (:meth:`imtrans.core.distributed.Distributed.interrupts`), its loading processes
ignore them (:func:`imtrans.data.workers.prepare_worker`), and ``imtrans run --nproc`` passes
SIGTERM and SIGHUP on to torchrun. SIGHUP does not exist on Windows.
"""

from __future__ import annotations

import signal

__all__ = ["STOP_SIGNALS", "StopRequested"]

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


class StopRequested(Exception):
    """Raised after a complete step when a stop was asked for: the loop finishes the jobs
    (checkpoint, partial record, report) and reports how to resume."""
