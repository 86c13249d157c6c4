"""The ``imtrans`` command line: the click group :data:`cli` and the console-script :func:`main`.

The group and its error handling are in :mod:`imtrans.cli.app`, one module per command beside
it, and everything they print goes through :mod:`imtrans.cli.output`.
"""

from imtrans.cli.app import cli, main

__all__ = ["cli", "main"]
