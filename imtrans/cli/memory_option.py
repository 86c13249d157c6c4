"""The ``--max-memory`` option of the commands whose work a file or a flag sizes.

``imtrans translate`` (an image's declared pixels) and ``imtrans export`` (``--check-size``)
estimate the memory of that work before doing it and refuse, with one line, what is above
this budget (:mod:`imtrans.inference.budget`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from imtrans.errors import InvalidArgumentError

__all__ = ["MemorySize", "max_memory_option"]

F = TypeVar("F", bound=Callable[..., Any])


class MemorySize(click.ParamType[int]):
    """A size in bytes: ``4096``, ``512M``, ``8G``, ``1.5GiB``."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        from imtrans.inference.budget import parse_size

        try:
            return parse_size(str(value))
        except InvalidArgumentError as exc:
            self.fail(str(exc), param, ctx)


def max_memory_option(what: str) -> Callable[[F], F]:
    """``--max-memory SIZE``, passed to the command as ``max_memory`` (``None``: default)."""
    return click.option(
        "--max-memory", "max_memory", type=MemorySize(), default=None, metavar="SIZE",
        help=f"Memory {what} may take, e.g. 8G or 512M; more is refused before it is "
             "allocated (default: 3/4 of the memory available now).")
