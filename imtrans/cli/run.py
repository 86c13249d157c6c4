"""The ``imtrans run`` command: train a recipe, in this process or as several through torchrun.

A thin command over :func:`imtrans.engine.loop.fit`, with the rich progress bar of
:mod:`imtrans.cli.progress` on stderr. The engine and torch are imported when the command runs,
so that ``imtrans --help`` stays fast; library errors propagate to the ``imtrans`` group, which
turns them into a message and an exit code.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.text import Text

from imtrans.cli.output import EXIT_INTERRUPTED, stderr_console
from imtrans.errors import ImtransError, TrainingInterrupted
from imtrans.plugins import components

__all__ = ["run"]


@click.command("run")
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
    from imtrans.checkpoint.lookup import find_resume_point
    from imtrans.cli.progress import RichProgress
    from imtrans.engine.distributed import is_main_process
    from imtrans.engine.loop import fit
    from imtrans.recipe import load_recipe

    loaded = components()
    recipe = load_recipe(recipe_path, overrides, registry=loaded)
    checkpoint = find_resume_point(resume, recipe) if resume else None
    if nproc > 1:
        _launch_processes(ctx, nproc, recipe_path, overrides, checkpoint)
    console = stderr_console()
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
