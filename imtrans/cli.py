"""The ``imtrans`` command line: thin commands over the library.

The library raises :class:`~imtrans.errors.ImtransError`; this module alone turns one into a
one-line message on stderr and a non-zero exit code (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from imtrans.errors import ImtransError, TrainingInterrupted
from imtrans.plugins import KINDS, components
from imtrans.version import __version__

__all__ = ["main"]

#: Exit code of a failure the user can fix (bad recipe, missing data, broken plugin).
EXIT_ERROR = 1
#: Exit code after Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130


class _Group(click.Group):
    """Runs a command and converts library errors into a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ImtransError, OSError) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            # An OSError is the system's (a full disk, a folder without write permission):
            # its own words and the file name say what to fix.
            text = str(exc) if isinstance(exc, ImtransError) else _os_error_text(exc)
            message = Text("error: ", style="bold red") + Text(text)
            Console(stderr=True, soft_wrap=True).print(message, highlight=False)
            ctx.exit(EXIT_ERROR)


def _os_error_text(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="imtrans")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """imtrans: image-to-image translation (pix2pix, CycleGAN) from TOML recipes."""
    ctx.obj = {"debug": debug}


@cli.command("list")
@click.argument("kind", required=False, type=click.Choice(list(KINDS)))
def list_components(kind: str | None) -> None:
    """List the registered components (of one KIND, or all)."""
    loaded = components()
    table = _table("kind", "name", "source", "summary")
    for plural in [kind] if kind else list(KINDS):
        for entry in loaded.registry(plural).entries():
            _row(table, KINDS[plural], entry.name, entry.source, entry.summary)
    _console().print(table)


@cli.command()
def plugins() -> None:
    """List the loaded plugins, their versions and what each registered."""
    table = _table("plugin", "distribution", "version", "registered")
    for info in components().plugins:
        registered = "; ".join(f"{kind}: {', '.join(names)}"
                               for kind, names in info.registered.items())
        _row(table, info.name, info.distribution, info.version, registered or "(nothing)")
    _console().print(table)


@cli.command()
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a recipe value (repeatable), e.g. --set optim.lr=1e-4.")
@click.option("--print", "print_resolved", is_flag=True,
              help="Also print the resolved recipe with every default filled in.")
def validate(recipe_path: str, overrides: tuple[str, ...], print_resolved: bool) -> None:
    """Check RECIPE and build every component on the meta device (no weights allocated)."""
    from imtrans.assembly import summarize
    from imtrans.recipe import load_recipe
    from imtrans.tomlwriter import dumps

    loaded = components()
    recipe = load_recipe(recipe_path, overrides, registry=loaded)
    rows = summarize(recipe, loaded)
    table = _table("role", "component", "parameters", "source", "detail")
    for row in rows:
        params = f"{row.parameters:,}" if row.parameters is not None else ""
        _row(table, row.role, row.name, params, row.source, row.detail)
    console = _console()
    console.print(table)
    if print_resolved:
        console.print(dumps(recipe.resolved()), markup=False, highlight=False)
    total = sum(r.parameters or 0 for r in rows)
    console.print(Text(f"recipe {recipe_path} is valid: {len(rows)} components, "
                       f"{total:,} parameters"))


@cli.command()
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a recipe value (repeatable), e.g. --set train.max_steps=20.")
@click.option("--resume", "resume", is_flag=False, flag_value="latest", default=None,
              metavar="[CHECKPOINT|RUN_DIR]",
              help="Continue a run exactly: from the latest run of this recipe (no value), "
                   "a run directory, or a checkpoint file.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train with N processes on this machine (one per GPU), through torchrun; "
                   "data.batch_size is per process.")
@click.pass_context
def run(ctx: click.Context, recipe_path: str, overrides: tuple[str, ...], resume: str | None,
        nproc: int) -> None:
    """Train RECIPE; progress, samples, metrics and checkpoints go to a run directory.

    Under torchrun (``torchrun --nproc_per_node=N -m imtrans run RECIPE``), each process
    trains on its share of every batch with DistributedDataParallel; rank 0 writes.
    """
    from imtrans.checkpoint import training as training_state
    from imtrans.engine.distributed import is_main_process
    from imtrans.engine.loop import fit
    from imtrans.engine.progress import RichProgress
    from imtrans.recipe import load_recipe

    loaded = components()
    recipe = load_recipe(recipe_path, overrides, registry=loaded)
    checkpoint = training_state.find_resume_point(resume, recipe) if resume else None
    if nproc > 1:
        _launch_processes(ctx, nproc, recipe_path, overrides, checkpoint)
    console = Console(stderr=True, soft_wrap=True,
                      width=None if sys.stderr.isatty() else 200)
    try:
        result = fit(recipe, registry=loaded, resume=checkpoint, observer=RichProgress(console))
    except TrainingInterrupted as exc:
        if is_main_process():  # under torchrun, rank 0 speaks for all
            console.print(Text(str(exc).replace("RECIPE", recipe_path)), highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    if not is_main_process():
        return
    console.print(Text(f"finished at step {result.step}: {result.run_dir} "
                       f"(last checkpoint {result.checkpoint})"), highlight=False)


def _launch_processes(ctx: click.Context, nproc: int, recipe_path: str,
                      overrides: tuple[str, ...], checkpoint: Any) -> None:
    """Run this command again as ``nproc`` processes through torchrun; exit with their code.

    ``--resume`` is passed as the checkpoint it resolved to, so every rank loads the same one.
    """
    import os
    import signal
    import subprocess

    if "RANK" in os.environ:
        raise ImtransError("--nproc inside torchrun: use one or the other")
    debug = ["--debug"] if ctx.obj and ctx.obj.get("debug") else []
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "imtrans", *debug, "run", recipe_path,
               *(arg for o in overrides for arg in ("--set", o)),
               *(["--resume", str(checkpoint)] if checkpoint else [])]
    process = subprocess.Popen(command)
    signalled = []

    def forward(signum: int, frame: Any) -> None:
        signalled.append(signum)
        process.send_signal(signum)

    # Ctrl-C reaches every process of the terminal's group already; SIGTERM is passed on to
    # torchrun, which passes it on to the ranks: they agree on a step, rank 0 saves, all stop.
    # torchrun itself then exits with 1 (and its own traceback): after a signal, report 130.
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame:
                                             signalled.append(signum)),
                signal.SIGTERM: signal.signal(signal.SIGTERM, forward)}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.exit(EXIT_INTERRUPTED if code and signalled else code)


def _register_subcommands() -> None:
    from imtrans.cli_bench import bench
    from imtrans.cli_data import data
    from imtrans.cli_eval import evaluate
    from imtrans.cli_export import export
    from imtrans.cli_report import report
    from imtrans.cli_translate import translate

    cli.add_command(bench)
    cli.add_command(data)
    cli.add_command(translate)
    cli.add_command(report)
    cli.add_command(evaluate)
    cli.add_command(export)


_register_subcommands()


def _console() -> Console:
    # Piped output keeps whole rows (for grep and scripts) instead of wrapping at 80 columns.
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _table(*columns: str) -> Table:
    """A plain table whose cells are text, never rich markup (names may hold brackets)."""
    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column)
    return table


def _row(table: Table, *cells: str) -> None:
    table.add_row(*(Text(cell) for cell in cells))


def main() -> None:
    """Entry point of the ``imtrans`` console script."""
    cli(prog_name="imtrans")


if __name__ == "__main__":
    sys.exit(main())
