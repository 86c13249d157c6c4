"""The ``imtrans report`` command: regenerate ``report.html`` of a run directory.

A thin command over :func:`imtrans.report.write_report`; library errors propagate to the
``imtrans`` group, which turns them into a message and an exit code.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from imtrans.cli.output import stdout_console
from imtrans.errors import DataError

__all__ = ["report"]


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
def report(run_dir: Path) -> None:
    """Write RUN_DIR/report.html (curves, samples, checkpoints, recipe) and print its path.

    Training refreshes the report by itself; this rebuilds it, for example after copying a
    run directory or adding evaluation results to it.
    """
    from imtrans.report import write_report
    from imtrans.rundir import RunDir

    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist (expected a folder such as "
                        "runs/<recipe name>/ that training wrote)")
    if not RunDir(run_dir).recipe.is_file():
        raise DataError(f"{run_dir} is not a run directory: it has no recipe.toml (expected "
                        "the folder a training run wrote, such as runs/<recipe name>/)")
    stdout_console().print(Text(str(write_report(run_dir))), highlight=False)
