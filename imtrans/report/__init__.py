"""``report.html``: one self-contained page per run directory with curves, samples and results;
and a comparison page overlaying several runs.

The page reads only the run directory (``recipe.toml``, ``environment.json``,
``metrics.jsonl``, ``samples/``, ``checkpoints/``, ``eval/``), loads nothing from the network
and links images by relative paths, so it works offline, from ``file://`` and after the run
directory is moved. It is cheap enough to rewrite while training runs.

Example:
    >>> from imtrans.report import write_comparison, write_report
    >>> write_report(Path("runs/cyclegan_photo2monet"), live=True)  # doctest: +SKIP
    PosixPath('runs/cyclegan_photo2monet/report.html')
    >>> write_comparison([Path("runs/a"), Path("runs/b")], Path("compare.html"))  # doctest: +SKIP
    PosixPath('compare.html')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from imtrans.core.atomic import atomic_write
from imtrans.core.regular_files import why_not_folder
from imtrans.errors import DataError
from imtrans.report.compare import ComparedRun, render_comparison
from imtrans.report.data import read_run
from imtrans.report.page import render_page
from imtrans.runs.directory import RunDir

__all__ = ["run_labels", "write_comparison", "write_report"]


def write_report(run_dir: Path, *, live: bool = False) -> Path:
    """Write (or rewrite) ``run_dir/report.html`` from the files in ``run_dir``.

    Missing files are shown as such ("no metrics yet"), and a half-written last line of
    ``metrics.jsonl`` is skipped, so this can run at any point of training. The page is written
    atomically (:func:`imtrans.core.atomic.atomic_write`), so a browser never shows half a report.

    Args:
        run_dir: A run directory (it may still be empty).
        live: The run is still training: the page says so and reloads itself every 30 s
            (:data:`imtrans.report.layout.LIVE_REFRESH_SECONDS`). Training writes its last
            report with ``live=False``, which turns the reloading off.

    Returns:
        The path of the report.

    Raises:
        DataError: ``run_dir`` is not a directory, or the report cannot be written there.
    """
    run_dir = Path(run_dir)
    reason = why_not_folder(run_dir)
    if reason is not None:
        raise DataError(f"cannot write a report: run directory {run_dir} {reason}")
    html = render_page(read_run(run_dir), datetime.now().astimezone(), live=live)
    target = RunDir(run_dir).report
    _write(target, html)
    return target


def write_comparison(run_dirs: Sequence[Path], output: Path) -> Path:
    """Write a page to ``output`` overlaying the curves of ``run_dirs``, one colour per run.

    The legend names each run (by folder name, or by as much of its path as tells it from the
    others) and links to its ``report.html`` by a path relative to ``output``, so the page
    works from ``file://`` as long as it stays where it was written relative to the runs.

    Returns:
        ``output``.

    Raises:
        DataError: a run directory does not exist, one is given twice, or ``output`` cannot
            be written.
    """
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise DataError("cannot compare runs: no run directory given")
    seen: dict[Path, Path] = {}
    for run_dir in dirs:
        reason = why_not_folder(run_dir)
        if reason is not None:
            raise DataError(f"cannot compare runs: run directory {run_dir} {reason}")
        if run_dir.resolve() in seen:
            raise DataError(f"cannot compare runs: {run_dir} is given twice (as "
                            f"{seen[run_dir.resolve()]} too)")
        seen[run_dir.resolve()] = run_dir
    output = Path(output)
    runs = [ComparedRun(label, read_run(run_dir), _link(RunDir(run_dir).report, output))
            for label, run_dir in zip(run_labels(dirs), dirs, strict=True)]
    _write(output, render_comparison(runs, datetime.now().astimezone()))
    return output


def run_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Short distinct names of runs: their folder names, with as many parent folders as it
    takes to tell apart runs of the same name.

    Example:
        >>> run_labels([Path("a/x/cyclegan"), Path("b/x/cyclegan"), Path("runs/pix2pix")])
        ['a/x/cyclegan', 'b/x/cyclegan', 'pix2pix']
    """
    parts = [Path(os.path.abspath(d)).parts for d in run_dirs]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(p[-n:]) for p, n in zip(parts, depth, strict=True)]
        clashing = {i for i, label in enumerate(labels) if labels.count(label) > 1
                    and depth[i] < len(parts[i])}
        if not clashing:
            return labels
        for i in clashing:
            depth[i] += 1


def _link(target: Path, page: Path) -> str | None:
    """``target`` as a link from ``page`` (relative, URL-quoted), or None when it is missing."""
    if not target.is_file():
        return None
    try:
        relative = os.path.relpath(target.resolve(), page.resolve().parent)
    except ValueError:  # another drive (Windows): only an absolute link reaches it
        return target.resolve().as_uri()
    return quote(Path(relative).as_posix())


def _write(target: Path, html: str) -> None:
    try:
        atomic_write(target, html)
    except OSError as exc:
        raise DataError(f"cannot write the report {target}: {exc.strerror or exc}") from exc
