"""Writing outputs beside the network in a thread of their own, or in turn where it is faster.

PNG's zlib and JPEG's encoder release the GIL in Pillow, so a writer thread encodes one image
while the network translates the next. The queue between them is small and bounded: a slow
disk holds the translation back instead of filling the memory with finished images.

The first error of a write stops the writer: it is raised in the translating thread at its
next :meth:`BackgroundWriter.put` or at :meth:`BackgroundWriter.close`, so a full disk or a
read-only folder stops the translation as a write in the translating thread would.

That pays where the encoding has a core to itself: the network runs on a GPU (the CPU waits
for it), or torch's threads leave one of the process's cores free. A CPU network that keeps
every core busy is slowed more by a thread beside it than the encoding costs: a parallel layer
ends when its last thread does, and the writer takes that thread's core away. On a 2-core CPU,
translating 48 photos to PNG with the bf16 ResNet generator took 0.986 and 0.953 of the time
(medians of 6 and 8 whole-process runs, paired) with the PNGs encoded in turn rather than
beside the network. :func:`output_writer` picks the writer by that rule;
:class:`InlineWriter` writes in the translating thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import torch

from imtrans.data.workers import usable_cores

__all__ = ["BackgroundWriter", "InlineWriter", "encoding_has_a_core", "output_writer"]

Item = TypeVar("Item")

_STOP = object()
_POLL_SECONDS = 0.1


class BackgroundWriter(Generic[Item]):
    """Hand items to ``write`` in one background thread, in the order they are put.

    Use it as a context manager: leaving the block waits for every item put to be written,
    and raises the writer's error, if any (also when the block itself raised, its own error
    first: items already put are still written, so nothing finished is lost).

    Example:
        >>> done = []
        >>> with BackgroundWriter(done.append) as writer:
        ...     writer.put(1)
        ...     writer.put(2)
        >>> done
        [1, 2]
    """

    def __init__(self, write: Callable[[Item], None], capacity: int = 4) -> None:
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._error: BaseException | None = None
        self._reported = False
        self._thread = threading.Thread(target=self._run, name="imtrans-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # after an error, only drained: the translating thread stops
            try:
                self._write(item)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the translating thread
                self._error = exc

    def _raise_error(self) -> None:
        # Raised once; the writer stays stopped (it skips what is still queued).
        if self._error is not None and not self._reported:
            self._reported = True
            raise self._error

    def put(self, item: Item) -> None:
        """Queue ``item`` for writing (waiting while the queue is full); raise the error of
        an earlier write, if one failed."""
        self._raise_error()
        while True:
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                self._raise_error()

    def close(self) -> None:
        """Wait for every queued item to be written; raise the first write's error."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_error()

    def __enter__(self) -> BackgroundWriter[Item]:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if error is None:
            self.close()
            return
        # The block's own error is the one to report; the queued items are still written.
        with contextlib.suppress(BaseException):
            self.close()


class InlineWriter(Generic[Item]):
    """Hand items to ``write`` in the calling thread, at :meth:`put`: the interface of
    :class:`BackgroundWriter`, for a network that keeps every core busy. A write's error is
    raised by the :meth:`put` that made it.

    Example:
        >>> done = []
        >>> with InlineWriter(done.append) as writer:
        ...     writer.put(1)
        >>> done
        [1]
    """

    def __init__(self, write: Callable[[Item], None]) -> None:
        self._write = write

    def put(self, item: Item) -> None:
        """Write ``item`` now."""
        self._write(item)

    def close(self) -> None:
        """Nothing waits: every item was written at its :meth:`put`."""

    def __enter__(self) -> InlineWriter[Item]:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        self.close()


def encoding_has_a_core(device: torch.device) -> bool:
    """Whether a writer thread encodes beside a network on ``device`` without slowing it: the
    network runs on an accelerator, or torch's threads leave a core of this process free."""
    return device.type != "cpu" or torch.get_num_threads() < usable_cores()


def output_writer(write: Callable[[Item], None],
                  device: torch.device) -> BackgroundWriter[Item] | InlineWriter[Item]:
    """A :class:`BackgroundWriter` where :func:`encoding_has_a_core` on ``device``, else an
    :class:`InlineWriter`."""
    if encoding_has_a_core(device):
        return BackgroundWriter(write)
    return InlineWriter(write)
