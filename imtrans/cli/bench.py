"""The ``imtrans bench`` command: time a recipe's training step and print one JSON line.

A thin command over :mod:`imtrans.bench.timing` (with ``--suite``, over
:mod:`imtrans.bench.suite`, through :mod:`imtrans.cli.bench_suite`); library errors propagate
to the ``imtrans`` group, which turns them into a message and an exit code.
"""

from __future__ import annotations

from pathlib import Path

import click

from imtrans.cli.existing_path import ExistingPath
from imtrans.cli.output import write_json_line
from imtrans.core.observer import TrainingObserver
from imtrans.errors import InvalidArgumentError

__all__ = ["bench"]


class _Notices(TrainingObserver):
    """Notices (the bundled-sample fallback, no GPU) to stderr: stdout holds only the JSON."""

    def message(self, text: str) -> None:
        click.echo(text, err=True)


@click.command("bench")
@click.argument("recipe_path", metavar="[RECIPE]", required=False,
                type=ExistingPath(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a recipe value (repeatable), e.g. --set speed.precision=bf16.")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(min=1),
              help="Timed training steps (with --suite: of every run; default: by batch).")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(min=0),
              help="Untimed steps first (they absorb compilation; with --suite: by mode).")
@click.option("--synthetic", is_flag=True,
              help="Random images on the device instead of the recipe's data.")
@click.option("--output", default=None, type=click.Path(dir_okay=False),
              help="Also append the JSON line(s) to this file.")
@click.option("--suite", default=None, metavar="gpu",
              help="Instead of RECIPE, run a suite: `gpu`, the GPU proof (see docs/training.md).")
@click.option("--size", type=click.Choice(["tiny", "full"]), default="full", show_default=True,
              help="Suite size: full (256 px, for a GPU) or tiny (32 px, CI on the CPU).")
@click.option("--modes", default=None, metavar="LIST",
              help="Suite: comma-separated speed modes (default: all four).")
@click.option("--cases", default=None, metavar="LIST",
              help="Suite: comma-separated cases (default: all, the DDP run included).")
@click.option("--budget", default=None, type=click.FloatRange(min=0), metavar="SECONDS",
              help="Suite: global deadline; runs that would overrun it are skipped "
                   "(default: 450 full, 600 tiny).")
@click.option("--speed/--no-speed", default=True, show_default=True,
              help="Suite: run the speed part (--no-speed with --quality: quality alone).")
@click.option("--quality", is_flag=True,
              help="Suite: also train pix2pix facades at the paper's settings and score it.")
@click.option("--data-root", default=None, type=click.Path(file_okay=False),
              help="Suite --quality: the facades folder (train/, test/).")
@click.option("--inception", default=None, type=click.Path(dir_okay=False),
              help="Suite --quality: the FID Inception weights (fid_inception_tf2015.pt).")
@click.option("--quality-dir", default="runs/gpu_proof", show_default=True,
              type=click.Path(file_okay=False),
              help="Suite --quality: where the run (and, without Inception weights, the "
                   "translated test images) go.")
@click.pass_context
def bench(ctx: click.Context, recipe_path: str | None, overrides: tuple[str, ...], steps: int,
          warmup: int, synthetic: bool, output: str | None, suite: str | None, size: str,
          modes: str | None, cases: str | None, budget: float | None, speed: bool,
          quality: bool, data_root: str | None, inception: str | None,
          quality_dir: str) -> None:
    """Time RECIPE's training step: images/s, step-time percentiles, data wait, peak memory
    and counted FLOPs, as one JSON line on stdout. Writes no run directory.

    With --suite gpu instead of RECIPE: every target setting in every speed mode, one JSON
    line each, then a summary table on stderr."""
    if output is not None:  # appended to after the work: refused before it
        from imtrans.runs.output_guard import refuse_run_file

        refuse_run_file(Path(output), InvalidArgumentError)
    if suite is not None or recipe_path is None:
        from imtrans.cli.bench_suite import run_suite_command

        run_suite_command(ctx, recipe_path=recipe_path, suite=suite, size=size, modes=modes,
                          cases=cases, budget=budget, speed=speed, quality=quality,
                          data_root=data_root, inception=inception, quality_dir=quality_dir,
                          overrides=overrides, output=output, synthetic=synthetic)
        return
    suite_only = [name for name, given in (("--quality", quality), ("--no-speed", not speed),
                                           ("--data-root", data_root), ("--modes", modes),
                                           ("--cases", cases), ("--budget", budget is not None),
                                           ("--inception", inception)) if given]
    if suite_only:
        raise InvalidArgumentError(f"{', '.join(suite_only)}: only with --suite gpu")
    from imtrans.bench.timing import benchmark
    from imtrans.catalogue.plugins import components
    from imtrans.catalogue.recipe_loader import load_recipe

    loaded = components()
    recipe = load_recipe(recipe_path, overrides, registry=loaded)
    result = benchmark(recipe, steps=steps, warmup=warmup, synthetic=synthetic,
                       registry=loaded, observer=_Notices())
    result["settings"] = {"recipe": recipe_path, "overrides": list(overrides)} | result["settings"]
    write_json_line(result, output)
