"""The ``imtrans report`` command: regenerate ``report.html`` of a run directory, or write a page
comparing several runs.

A thin command over :func:`imtrans.report.write_report` and
:func:`imtrans.report.write_comparison`; library errors propagate to the ``imtrans`` group,
which turns them into a message and an exit code.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.text import Text

from imtrans.cli.output import stdout_console
from imtrans.errors import DataError

__all__ = ["DEFAULT_COMPARISON", "report"]

#: Where the comparison page of several runs goes without ``--output``.
DEFAULT_COMPARISON = Path("compare.html")


@click.command("report")
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True,
                type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where the comparison page of several runs goes (default: compare.html in "
                   "the current folder; never inside a RUN_DIR). Not for one run, whose "
                   "report is always RUN_DIR/report.html.")
@click.option("--overwrite", is_flag=True,
              help="Let the comparison page replace an existing file that an earlier report "
                   "did not write (never a run directory's files).")
def report(run_dirs: tuple[Path, ...], output: Path | None, overwrite: bool) -> None:
    """Write RUN_DIR/report.html (curves, samples, checkpoints, recipe) and print its path.

    Training refreshes the report by itself; this rebuilds it, for example after copying a
    run directory or adding evaluation results to it.

    With several run directories, write one page overlaying their curves instead (one colour
    per run, a legend of run names linking to each run's report, the recipe keys that differ)
    to --output, compare.html by default, and print its path. Each run's own report.html is
    left as it is; an --output inside one of the run directories or on any run directory's
    file is refused, and so is an existing file an earlier report did not write (unless
    --overwrite).
    """
    from imtrans.core.paths import refuse_overwrite
    from imtrans.report import write_comparison, write_report
    from imtrans.runs.output_guard import guard_outputs

    for run_dir in run_dirs:
        _check_run_dir(run_dir)
    if len(run_dirs) == 1:
        if output is not None:
            raise click.UsageError("--output is for comparing several runs; the report of one "
                                   f"run is always {run_dirs[0] / 'report.html'}")
        written = write_report(run_dirs[0])
    else:
        target = output or DEFAULT_COMPARISON
        # A run directory's files (metrics, checkpoints, its report) belong to the run: the
        # page goes outside every compared run, so it can never replace one of them.
        refuse_overwrite([], [target], trees=run_dirs,
                         tree_reason="a run directory being compared, whose files the page "
                                     "must not replace")
        record = guard_outputs([target], target.parent, "report", overwrite=overwrite)
        written = write_comparison(run_dirs, target)
        record.add(written, "report")
    stdout_console().print(Text(str(written)), highlight=False)


def _check_run_dir(run_dir: Path) -> None:
    from imtrans.core.regular_files import check_regular_file, why_not_folder
    from imtrans.runs.directory import RunDir

    reason = why_not_folder(run_dir)  # a FIFO, a file, a link loop: said, not "missing"
    if reason is not None:
        raise DataError(f"run directory {run_dir} {reason} (expected a folder such as "
                        "runs/<recipe name>/ that training wrote)")
    recipe = RunDir(run_dir).recipe
    if os.path.lexists(recipe):  # a FIFO, a link loop: said, not "it has no recipe.toml"
        check_regular_file(recipe, what="the run's recipe", error=DataError)
    if not recipe.is_file():
        raise DataError(f"{run_dir} is not a run directory: it has no recipe.toml (expected "
                        "the folder a training run wrote, such as runs/<recipe name>/)")
