"""Data-loading processes: how many this machine takes, what each does when it starts, and
how the training process ends them when it exits."""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing
import os
import signal
import sys
import time
from functools import partial
from typing import Any

from imtrans.core.stop_signals import STOP_SIGNALS

__all__ = ["capped_workers", "usable_cores", "worker_init"]

#: prctl(2) option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1

#: How long a loading process gets to end after SIGTERM at exit before it is killed.
_EXIT_GRACE_S = 1.0

_exit_hook_registered = False


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity: taskset, container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def capped_workers(requested: int, setting: str) -> tuple[int, str | None]:
    """``requested`` loading processes, at most one per usable core; and the notice to show
    when that lowered it (``setting`` names where the number came from).

    Each loading process holds a copy of torch and of the dataset (hundreds of MiB): more of
    them than cores only compete for the CPU, and hundreds exhaust the memory.
    """
    cores = usable_cores()
    if requested <= cores:
        return requested, None
    return cores, (f"{setting} {requested} is more than the {cores} usable CPU "
                   f"core{'s' if cores != 1 else ''}; using {cores}")


def worker_init() -> Any:
    """A DataLoader ``worker_init_fn`` for loading processes of this process (see
    :func:`prepare_worker`)."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        # Registered after multiprocessing's own exit hook (imported with torch), so it runs
        # first: atexit calls hooks last registered first.
        atexit.register(_end_loading_processes)
        _exit_hook_registered = True
    return partial(prepare_worker, parent=os.getpid())


def _end_loading_processes() -> None:
    """At exit, end the loading processes still running, killing those that ignore SIGTERM.

    A DataLoader whose iterator is still referenced at exit (an exception's traceback holds
    it after a data error raised in a worker) has not shut its workers down; multiprocessing
    then sends them SIGTERM and waits for them, forever, since they ignore it
    (:func:`prepare_worker`). Like multiprocessing's own hook, this ends every daemonic child
    process: those are ended at exit anyway.
    """
    children = [p for p in multiprocessing.active_children() if p.daemon]
    for child in children:
        child.terminate()
    deadline = time.monotonic() + _EXIT_GRACE_S
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive():
            child.kill()
            child.join()


def prepare_worker(worker_id: int = 0, *, parent: int) -> None:
    """Leave Ctrl-C, SIGTERM and SIGHUP to the training process, and die with it.

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
    for stop in STOP_SIGNALS:  # Ctrl-C, SIGTERM, SIGHUP: the training process saves first
        signal.signal(stop, signal.SIG_IGN)
    # Only a direct child can be tied to the training process (under the forkserver or spawn
    # start methods the parent is a server process).
    if sys.platform.startswith("linux") and os.getppid() == parent:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died between the check and the request
            os._exit(1)
