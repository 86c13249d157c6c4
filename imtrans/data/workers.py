"""What every data-loading process does when it starts."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from functools import partial
from typing import Any

__all__ = ["worker_init"]

#: prctl(2) option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


def worker_init() -> Any:
    """A DataLoader ``worker_init_fn`` for loading processes of this process (see
    :func:`prepare_worker`)."""
    return partial(prepare_worker, parent=os.getpid())


def prepare_worker(worker_id: int = 0, *, parent: int) -> None:
    """Leave Ctrl-C and SIGTERM to the training process, and die with it.

    A terminal's Ctrl-C and a container's stop reach every process of the group. A loading
    process that died of it would make the DataLoader raise in the training process while it
    saves its interrupt checkpoint; ignoring the signal here lets that save finish, after
    which the DataLoader shuts its workers down as usual.

    A training process killed outright (SIGKILL, the out-of-memory killer) cannot shut its
    workers down. Torch's workers notice within seconds that their parent is gone, but may then
    hang on their way out with a result no one reads: on Linux they are told to exit with the
    thread that started them (the loop's, which trains until the end).

    Args:
        worker_id: The DataLoader's worker number (unused).
        parent: The training process's id.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Only a direct child can be tied to the training process (under the forkserver or spawn
    # start methods the parent is a server process).
    if sys.platform.startswith("linux") and os.getppid() == parent:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died between the check and the request
            os._exit(1)
