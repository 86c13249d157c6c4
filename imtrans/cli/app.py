"""The ``imtrans`` click group: ``--version``, ``--debug``, and every command registered on it.

The library raises :class:`~imtrans.errors.ImtransError`; the group here alone turns one (or an
:class:`OSError`) into a one-line message on stderr and a non-zero exit code (``--debug`` shows
the traceback instead). The commands live one module each beside this one and print through
:mod:`imtrans.cli.output`; this module imports them, never the other way round.
"""

from __future__ import annotations

from typing import Any

import click

from imtrans.cli.bench import bench
from imtrans.cli.components import list_components, plugins
from imtrans.cli.data import data
from imtrans.cli.demo import demo
from imtrans.cli.eval import evaluate
from imtrans.cli.export import export
from imtrans.cli.importing import import_checkpoints
from imtrans.cli.models import models
from imtrans.cli.output import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    error_text,
    print_error,
    warnings_as_lines,
)
from imtrans.cli.process_exit import run_then_end_process
from imtrans.cli.report import report
from imtrans.cli.run import run
from imtrans.cli.translate import translate
from imtrans.cli.validate import validate
from imtrans.errors import ImtransError
from imtrans.version import __version__

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "ImtransGroup", "cli", "console_main", "main"]


class ImtransGroup(click.Group):
    """Runs a command and converts library errors into a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Invoke the command; print an :class:`ImtransError` or :class:`OSError` and exit 1."""
        try:
            return super().invoke(ctx)
        except (ImtransError, OSError) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            print_error(error_text(exc))
            ctx.exit(EXIT_ERROR)


@click.group(cls=ImtransGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="imtrans")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """imtrans: image-to-image translation (pix2pix, CycleGAN) from TOML recipes."""
    ctx.obj = {"debug": debug}


cli.add_command(list_components)
cli.add_command(plugins)
cli.add_command(validate)
cli.add_command(run)
cli.add_command(bench)
cli.add_command(data)
cli.add_command(translate)
cli.add_command(demo)
cli.add_command(report)
cli.add_command(evaluate)
cli.add_command(export)
cli.add_command(import_checkpoints)
cli.add_command(models)


def main() -> None:
    """Run the ``imtrans`` command line on ``sys.argv``; it ends by raising ``SystemExit`` with
    the exit code, as a click program does."""
    with warnings_as_lines():
        cli(prog_name="imtrans")


def console_main() -> None:
    """Entry point of the ``imtrans`` console script (and of ``python -m imtrans``): :func:`main`,
    then the process ends without Python's slow teardown (:mod:`imtrans.cli.process_exit`)."""
    run_then_end_process(main)
