"""The ``imtrans validate`` command: check a recipe by building it on the meta device.

A thin command over :func:`imtrans.catalogue.recipe_loader.load_recipe` and
:func:`imtrans.catalogue.assembly.summarize`, imported when the command runs so that
``imtrans --help`` stays fast; library errors propagate to the ``imtrans`` group, which turns
them into a message and an exit code.
"""

from __future__ import annotations

import click
from rich.text import Text

from imtrans.catalogue.plugins import components
from imtrans.cli.output import add_row, make_table, stderr_console, stdout_console

__all__ = ["validate"]


@click.command("validate")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a recipe value (repeatable), e.g. --set optim.lr=1e-4.")
@click.option("--print", "print_resolved", is_flag=True,
              help="Also print the resolved recipe with every default filled in.")
def validate(recipe_path: str, overrides: tuple[str, ...], print_resolved: bool) -> None:
    """Check RECIPE and build every component on the meta device (no weights allocated).

    The checks ``imtrans run`` makes before training are made too: the data folders are
    listed, the output folder checked, and the evaluation's test split and Inception weights
    found. A recipe that validates runs.
    """
    from imtrans.catalogue.assembly import build_trainer, summarize
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.cli.preflight import check_runnable
    from imtrans.core.tomlwriter import dumps
    from imtrans.training.feasibility import check_feasible

    loaded = components()
    swaps: list[str] = []  # a --set that swapped a component: what it kept and dropped
    recipe = load_recipe(recipe_path, overrides, registry=loaded, notices=swaps)
    for swap in swaps:
        stderr_console().print(f"note: {swap}", markup=False, highlight=False)
    trainer = build_trainer(recipe, loaded)
    check_feasible(recipe, loaded, trainer)  # what the build of `imtrans run` refuses
    check_runnable(recipe, loaded)  # the refusals of `imtrans run` before its first step
    rows = summarize(recipe, loaded, trainer)
    table = make_table("role", "component", "parameters", "source", "detail")
    for row in rows:
        params = f"{row.parameters:,}" if row.parameters is not None else ""
        add_row(table, row.role, row.name, params, row.source, row.detail)
    console = stdout_console()
    console.print(table)
    if print_resolved:
        console.print(dumps(recipe.resolved()), markup=False, highlight=False)
    total = sum(r.parameters or 0 for r in rows)
    console.print(Text(f"recipe {recipe_path} is valid: {len(rows)} components, "
                       f"{total:,} parameters"))
