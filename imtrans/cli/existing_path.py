"""A click path argument that must exist, and says what a name that does not resolve is.

``click.Path(exists=True)`` says "does not exist" of a symbolic link loop and of a link to
nothing; :class:`ExistingPath` says which (``is a symbolic link loop``, ``is a symbolic link to
X, which does not exist``), so a user looks at the right thing.
"""

from __future__ import annotations

import os
from typing import Any

import click

from imtrans.core.regular_files import why_unreachable

__all__ = ["ExistingPath"]


class ExistingPath(click.Path):
    """``click.Path(exists=True, ...)`` with precise messages for names that do not resolve."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(exists=True, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, str | os.PathLike) and value != "-":
            try:
                os.stat(value)
            except OSError as exc:
                self.fail(f"{click.format_filename(value)!r} {why_unreachable(str(value), exc)}.",
                          param, ctx)
        return super().convert(value, param, ctx)
