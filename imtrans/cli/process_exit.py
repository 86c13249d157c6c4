"""Ending the ``imtrans`` process once its command is done, without the interpreter's teardown.

After a command returns, Python's normal exit frees every module and object one at a time.
With torch loaded that took 0.45 to 0.6 s on a 2-core CPU: longer than translating a 256 px
photo, on every command. None of it reaches the user. Commands close their files, and the
cleanups that matter (logging, multiprocessing's children, temporary folders, trackers) are
registered with :mod:`atexit`.

So the console script does the parts of the normal exit that have effects, in the same order:
it waits for the threads that are not daemons, runs the :mod:`atexit` handlers, and flushes
Python's and the C library's standard streams. Then it ends the process with :func:`os._exit`.
An exit with a message (``sys.exit("text")``) and any other exception take Python's own path,
traceback included.

Only the console script and ``python -m imtrans`` end this way. :func:`imtrans.cli.main` returns
or raises as before, so a program that calls it goes on after it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

__all__ = ["EXIT_FLUSH_FAILED", "end_process", "run_then_end_process"]

#: The code Python itself exits with when it cannot flush ``sys.stdout`` at exit (a closed
#: pipe, a full disk).
EXIT_FLUSH_FAILED = 120


def run_then_end_process(main: Callable[[], object]) -> NoReturn:
    """Run ``main``, then end the process with its exit code through :func:`end_process`.

    ``main`` ending normally is code 0, ``SystemExit(None)`` too, and ``SystemExit(n)`` code
    ``n``. ``SystemExit`` with any other value, and every other exception, propagate to Python's
    own exit."""
    try:
        main()
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            raise
        end_process(exc.code or 0)
    end_process(0)


def end_process(code: int) -> NoReturn:
    """End the process with exit code ``code`` after what Python's exit does that has effects:
    join the non-daemon threads, run the :mod:`atexit` handlers, flush the standard streams."""
    _join_other_threads()
    atexit._run_exitfuncs()  # the handlers' own errors are printed, as at a normal exit
    if not _flush_python_streams():
        code = code or EXIT_FLUSH_FAILED
    _flush_c_streams()
    os._exit(code)


def _join_other_threads() -> None:
    """Wait for every live thread that is not a daemon (threads may start others meanwhile)."""
    while True:
        waiting = [thread for thread in threading.enumerate()
                   if thread is not threading.current_thread() and not thread.daemon
                   and thread.is_alive()]
        if not waiting:
            return
        for thread in waiting:
            thread.join()


def _flush_python_streams() -> bool:
    """Flush ``sys.stdout`` and ``sys.stderr``; False when stdout could not be flushed."""
    stdout_flushed = True
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or a closed stream: Python warns, too
            stdout_flushed = stdout_flushed and stream is not sys.stdout
    return stdout_flushed


def _flush_c_streams() -> None:
    """``fflush(NULL)``: the C library's buffered output (a native library's ``printf`` into a
    pipe) is written at a normal exit, and :func:`os._exit` would drop it."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)
