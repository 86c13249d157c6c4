"""What every data-loading process does when it starts."""

from __future__ import annotations

import signal

__all__ = ["ignore_stop_signals"]


def ignore_stop_signals(worker_id: int = 0) -> None:
    """Leave Ctrl-C and SIGTERM to the training process (a DataLoader ``worker_init_fn``).

    A terminal's Ctrl-C and a container's stop reach every process of the group. A loading
    process that died of it would make the DataLoader raise in the training process while it
    saves its interrupt checkpoint; ignoring the signal here lets that save finish, after
    which the DataLoader shuts its workers down as usual.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
