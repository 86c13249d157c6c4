"""``report.html``: one self-contained page per run directory with curves, samples and results.

The page reads only the run directory (``recipe.toml``, ``environment.json``,
``metrics.jsonl``, ``samples/``, ``checkpoints/``, ``eval/``), loads nothing from the network
and links images by relative paths, so it works offline, from ``file://`` and after the run
directory is moved. It is cheap enough to rewrite while training runs.

Example:
    >>> from imtrans.report import write_report
    >>> write_report(Path("runs/cyclegan_photo2monet"))  # doctest: +SKIP
    PosixPath('runs/cyclegan_photo2monet/report.html')
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from imtrans.atomic import atomic_write
from imtrans.errors import DataError
from imtrans.report.data import read_run
from imtrans.report.page import render_page
from imtrans.rundir import RunDir

__all__ = ["write_report"]


def write_report(run_dir: Path) -> Path:
    """Write (or rewrite) ``run_dir/report.html`` from the files in ``run_dir``.

    Missing files are shown as such ("no metrics yet"), and a half-written last line of
    ``metrics.jsonl`` is skipped, so this can run at any point of training. The page is written
    atomically (:func:`imtrans.atomic.atomic_write`), so a browser never shows half a report.

    Args:
        run_dir: A run directory (it may still be empty).

    Returns:
        The path of the report.

    Raises:
        DataError: ``run_dir`` is not a directory, or the report cannot be written there.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"cannot write a report: run directory {run_dir} does not exist")
    html = render_page(read_run(run_dir), datetime.now().astimezone())
    target = RunDir(run_dir).report
    try:
        atomic_write(target, html)
    except OSError as exc:
        raise DataError(f"cannot write the report {target}: {exc.strerror or exc}") from exc
    return target
