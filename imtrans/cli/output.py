"""Everything the ``imtrans`` commands print goes through here: the stdout and stderr consoles
(whole rows when piped), the plain-text tables and their rows, the one-line ``error: ...``
message, and the exit codes that go with it. It imports nothing else of :mod:`imtrans.cli`, so
every command module can import it without an import cycle.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from imtrans.errors import ImtransError

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "add_row",
    "error_text",
    "make_table",
    "print_error",
    "print_warning",
    "stderr_console",
    "stdout_console",
    "warnings_as_lines",
    "write_json_line",
]

#: Exit code of a failure the user can fix (bad recipe, missing data, broken plugin).
EXIT_ERROR = 1
#: Exit code after Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130

#: Console width when the stream is not a terminal, so piped rows stay whole.
_PIPED_WIDTH = 200


def stdout_console() -> Console:
    """The console for a command's results on stdout (tables, paths, summaries)."""
    # Piped output keeps whole rows (for grep and scripts) instead of wrapping at 80 columns.
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else _PIPED_WIDTH)


def stderr_console() -> Console:
    """The console for progress and notices on stderr (``run``, ``translate``, ``eval``)."""
    return Console(stderr=True, soft_wrap=True,
                   width=None if sys.stderr.isatty() else _PIPED_WIDTH)


def make_table(*columns: str) -> Table:
    """A plain table whose cells are text, never rich markup (names may hold brackets)."""
    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column)
    return table


def add_row(table: Table, *cells: str) -> None:
    """Add a row of plain-text cells (printed as they are, brackets included) to ``table``."""
    table.add_row(*(Text(cell) for cell in cells))


def error_text(exc: ImtransError | OSError) -> str:
    """The message of a library error, or of a system error with the file it concerns."""
    if isinstance(exc, ImtransError):
        return str(exc)
    # An OSError is the system's (a full disk, a folder without write permission):
    # its own words and the file name say what to fix.
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


def print_error(text: str) -> None:
    """Print ``error: TEXT`` as one line on stderr (the prefix in bold red on terminals)."""
    from imtrans.core.printable import printable_path

    # A file name that is not UTF-8 would make the error itself fail to print.
    message = Text("error: ", style="bold red") + Text(printable_path(text))
    Console(stderr=True, soft_wrap=True).print(message, highlight=False)


def print_warning(text: str) -> None:
    """Print ``warning: TEXT`` as one line on stderr (the prefix in bold yellow on terminals)."""
    from imtrans.core.printable import printable_path

    message = Text("warning: ", style="bold yellow") + Text(printable_path(text))
    Console(stderr=True, soft_wrap=True).print(message, highlight=False)


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show imtrans's own warnings (a skipped image, a damaged metrics line...) as
    ``warning: TEXT`` lines, each text once, instead of Python's format with a source file,
    a line number and a line of code that mean nothing to a user (the checks before a run and
    the run itself would each show a skipped folder). Other packages' warnings are shown as
    before. Warnings that a caller records (``pytest.warns``) are left to it: the console
    script installs this, not the commands.
    """
    original = warnings.showwarning
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if not category.__module__.startswith("imtrans."):
            original(message, category, filename, lineno, file, line)
        elif str(message) not in seen:
            seen.add(str(message))
            print_warning(str(message))

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def write_json_line(record: dict[str, Any], output: str | None) -> None:
    """Print ``record`` as one JSON line on stdout, and append it to ``output`` when given."""
    line = json.dumps(record)
    click.echo(line)
    if output is not None:
        with Path(output).open("a", encoding="utf-8") as file:
            file.write(line + "\n")
    sys.stdout.flush()
