"""``imtrans bench --suite gpu``: the options checked, the suite run, its lines and table.

JSON lines go to stdout (and ``--output``) as each run ends, so a suite stopped from outside
still leaves what it measured; progress lines and the summary table go to stderr, so that
stdout stays one JSON object per line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.text import Text

from imtrans.cli.output import add_row, make_table, stderr_console, write_json_line
from imtrans.errors import InvalidArgumentError

if TYPE_CHECKING:  # torch is imported when the command runs
    from imtrans.bench.suite import Record

__all__ = ["run_suite_command"]

_SUITES = ("gpu",)


def run_suite_command(ctx: click.Context, *, recipe_path: str | None, suite: str | None,
                      size: str, modes: str | None, cases: str | None, budget: float | None,
                      speed: bool, quality: bool, data_root: str | None, inception: str | None,
                      quality_dir: str, overrides: tuple[str, ...], output: str | None,
                      synthetic: bool) -> None:
    """Check the suite's options, run it, print its lines and its table.

    Raises:
        InvalidArgumentError: a RECIPE with --suite, neither, an unknown suite, mode or case,
            --synthetic, or nothing to run.
    """
    if suite is None:
        raise InvalidArgumentError("give a RECIPE to time, or --suite gpu for the GPU proof")
    if suite not in _SUITES:
        raise InvalidArgumentError(f"--suite {suite!r}: unknown suite; known: "
                                   f"{', '.join(_SUITES)}")
    if recipe_path is not None:
        raise InvalidArgumentError(f"--suite {suite} runs its own recipes: drop RECIPE "
                                   f"({recipe_path}), or drop --suite to time it")
    if synthetic:
        raise InvalidArgumentError("--suite gpu measures from JPEG folders through the data "
                                   "pipeline: --synthetic does not apply")
    if not speed and not quality:
        raise InvalidArgumentError("--no-speed without --quality leaves nothing to run")

    from imtrans.bench.suite import (
        MODES,
        SIZES,
        QualityOptions,
        SuiteOptions,
        quality_modes,
        run_quality,
        run_suite,
        summary_rows,
    )
    from imtrans.bench.suite.plan import CASES, parse_names
    from imtrans.bench.suite.summary import ran_on_cuda
    from imtrans.catalogue.plugins import components

    chosen_modes = parse_names(modes, tuple(m.name for m in MODES), "modes")
    chosen_cases = parse_names(cases, tuple(CASES), "cases")
    suite_size = SIZES[size]
    registry = components()
    console = stderr_console()

    def emit(record: Record) -> None:
        write_json_line(record, output)

    def progress(line: str) -> None:
        console.print(Text(line, style="dim"), highlight=False)

    explicit = click.core.ParameterSource.COMMANDLINE
    records: list[Record] = []
    if speed:
        options = SuiteOptions(
            size=suite_size, modes=chosen_modes, cases=chosen_cases,
            budget_s=suite_size.budget_s if budget is None else budget, overrides=overrides,
            steps=ctx.params["steps"] if ctx.get_parameter_source("steps") == explicit
            else None,
            warmup=ctx.params["warmup"] if ctx.get_parameter_source("warmup") == explicit
            else None)
        records = run_suite(options, emit, registry=registry, progress=progress)
        _print_table(summary_rows(records, cuda=ran_on_cuda(records), size=size))
    if quality:
        options_q = QualityOptions(
            size=suite_size, out_dir=Path(quality_dir),
            data_root=Path(data_root) if data_root else None, inception=inception,
            modes=quality_modes(records, chosen_modes), overrides=overrides)
        run_quality(options_q, emit, registry=registry, progress=progress)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    """The summary table on stderr, after the JSON lines."""
    from imtrans.bench.suite import COLUMNS

    table = make_table(*COLUMNS)
    for row in rows:
        add_row(table, *row)
    stderr_console().print(table)
