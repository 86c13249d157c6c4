"""The ``imtrans`` command line: the click group :data:`cli`, :func:`main` that runs
it, and the console script's :func:`console_main`.

The group and its error handling are in :mod:`imtrans.cli.app`, one module per command beside
it, and everything they print goes through :mod:`imtrans.cli.output`.
"""

from imtrans.cli.app import cli, console_main, main

__all__ = ["cli", "console_main", "main"]
