"""The ``imtrans bench`` command: time a recipe's training step and print one JSON line.

A thin command over :mod:`imtrans.engine.bench`; library errors propagate to the ``imtrans``
group, which turns them into a message and an exit code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from imtrans.engine.observer import TrainingObserver

__all__ = ["bench"]


class _Notices(TrainingObserver):
    """Notices (the bundled-sample fallback, no GPU) to stderr: stdout holds only the JSON."""

    def message(self, text: str) -> None:
        click.echo(text, err=True)


@click.command("bench")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a recipe value (repeatable), e.g. --set speed.precision=bf16.")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(min=1),
              help="Timed training steps.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(min=0),
              help="Untimed steps first (they absorb compilation).")
@click.option("--synthetic", is_flag=True,
              help="Random images on the device instead of the recipe's data.")
@click.option("--output", default=None, type=click.Path(dir_okay=False),
              help="Also append the JSON line to this file.")
def bench(recipe_path: str, overrides: tuple[str, ...], steps: int, warmup: int,
          synthetic: bool, output: str | None) -> None:
    """Time RECIPE's training step: images/s, step-time percentiles, data wait, peak memory
    and counted FLOPs, as one JSON line on stdout. Writes no run directory."""
    from imtrans.engine.bench import benchmark
    from imtrans.plugins import components
    from imtrans.recipe import load_recipe

    loaded = components()
    recipe = load_recipe(recipe_path, overrides, registry=loaded)
    result = benchmark(recipe, steps=steps, warmup=warmup, synthetic=synthetic,
                       registry=loaded, observer=_Notices())
    result["settings"] = {"recipe": recipe_path, "overrides": list(overrides)} | result["settings"]
    line = json.dumps(result)
    click.echo(line)
    if output is not None:
        with Path(output).open("a", encoding="utf-8") as file:
            file.write(line + "\n")
    sys.stdout.flush()
