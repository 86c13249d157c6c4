"""The ``imtrans run`` command: train a recipe, in this process or as several through torchrun.

A thin command over :func:`imtrans.runner.fit` (training with evaluation during it and the
report), with the rich progress bar of :mod:`imtrans.cli.progress` on stderr. The engine and
torch are imported when the command runs, so that ``imtrans --help`` stays fast; library
errors propagate to the ``imtrans`` group, which turns them into a message and an exit code.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imtrans.catalogue.plugins import components
from imtrans.cli.output import EXIT_INTERRUPTED, error_text, stderr_console
from imtrans.errors import ImtransError, InvalidArgumentError, TrainingInterrupted

if TYPE_CHECKING:
    from imtrans.runs.directory import MadeRunDir


__all__ = ["run"]


@click.command("run")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a recipe value (repeatable), e.g. --set train.max_steps=20.")
@click.option("--resume", "resume", is_flag=False, flag_value="latest", default=None,
              metavar="[auto|CHECKPOINT|RUN_DIR]",
              help="Continue a run exactly: from the latest run of this recipe (no value), "
                   "a run directory, or a checkpoint file. 'auto': resume this recipe's run "
                   "(run.output_dir/run.name) if it has a checkpoint, else start it there; "
                   "for jobs that rerun the same command (Slurm requeue, torchrun restarts).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train with N processes on this machine (one per GPU), through torchrun; "
                   "data.batch_size is per process.")
@click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
              help="Torch's CPU threads in each training process (run.threads; default: the "
                   "usable cores minus the data loading processes).")
@click.option("--allow-changes", is_flag=True,
              help="Resume with other task settings (data, trainer, losses, optimiser, "
                   "schedule) than the checkpoint's; what changed is recorded in the metrics.")
@click.pass_context
def run(ctx: click.Context, recipe_path: str, overrides: tuple[str, ...], resume: str | None,
        nproc: int, threads: int | None, allow_changes: bool) -> None:
    """Train RECIPE; progress, samples, metrics and checkpoints go to a run directory.

    Under torchrun (``torchrun --nproc_per_node=N -m imtrans run RECIPE``), each process
    trains on its share of every batch with DistributedDataParallel; rank 0 writes.
    """
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.cli.preflight import check_runnable
    from imtrans.cli.progress import RichProgress
    from imtrans.core.distributed import is_main_process
    from imtrans.runner import fit
    from imtrans.runs.checkpoints.lookup import AUTO, find_resume_point, resume_or_start
    from imtrans.runs.directory import MadeRunDir, recording_made_run_dirs
    from imtrans.training.records import RunNotices
    from imtrans.training.torchrun import keep_rank_failure

    if threads is not None:  # as --set run.threads=N (passed on to the ranks of --nproc)
        overrides = (*overrides, f"run.threads={threads}")
    loaded = components()
    swaps: list[str] = []  # a --set that swapped a component: what it kept and dropped
    recipe = load_recipe(recipe_path, overrides, registry=loaded, notices=swaps)
    run_dir = None  # a resume writes into its checkpoint's run; a start into a new one...
    if resume == AUTO:  # ...or, with auto, into the recipe's run directory (no -2)
        found = resume_or_start(recipe)
        checkpoint = found.checkpoint
        run_dir = found.run_dir if checkpoint is None else None
    else:
        checkpoint = find_resume_point(resume, recipe) if resume else None
    # What validate checks too: data folders, the output folder, [eval] (before any process).
    check_runnable(recipe, loaded, new_run=checkpoint is None)
    if nproc > 1:
        from imtrans.training.feasibility import check_feasible

        check_feasible(recipe, loaded)  # before any process starts (each rank's build checks too)
        # Every rank loads the checkpoint resolved here; a start stays "auto" (no -2 then).
        forwarded = str(checkpoint) if checkpoint else (AUTO if resume == AUTO else None)
        _launch_processes(ctx, nproc, recipe_path, overrides, forwarded, recipe.run.device,
                          Path(recipe.run.output_dir))
    console = stderr_console()
    # A start that fails removes the run directory it made when it holds nothing of value, so
    # the retry takes the same name (not NAME-2): the fit records what it makes.
    starts_there = checkpoint is None and is_main_process()  # --resume auto's start there
    fresh = MadeRunDir.to_make(run_dir) if starts_there and run_dir is not None else None
    made = [fresh] if fresh is not None else []
    notices = RunNotices(RichProgress(console))  # every notice in train.log, the last ones too
    for swap in swaps if is_main_process() else ():
        notices.message(f"note: {swap}")
    try:
        with recording_made_run_dirs(made if checkpoint is None else []):  # a branch stays
            result = fit(recipe, registry=loaded, resume=checkpoint, run_dir=run_dir,
                         observer=notices, allow_changes=allow_changes)
    except TrainingInterrupted as exc:
        if is_main_process():  # under torchrun, rank 0 speaks for all
            text = str(exc).replace("RECIPE", _as_typed(recipe_path, overrides))
            notices.say(_left_behind(made, text, kept_said=False))  # it names its checkpoint
        sys.exit(EXIT_INTERRUPTED)
    except (ImtransError, OSError) as exc:
        notices.record(f"error: {error_text(exc)}")  # before what a failed start removes
        _say_left_behind(made, exc)
        # A rank started by `--nproc` leaves its line to the launcher, which prints one for all
        # ranks (each would print its own, and torchrun may stop one before it does).
        keep_rank_failure(error_text(exc))
        raise  # one error line, from the imtrans group
    except Exception:
        _left_behind(made, "")
        # A rank started by `--nproc` keeps an unexpected traceback (a collective whose peer
        # was killed) for the launcher, which says in one line what happened.
        keep_rank_failure()
        raise
    except BaseException:  # a Ctrl-C before training began
        _left_behind(made, "")
        raise
    if not is_main_process():
        return
    notices.say(f"finished at step {result.step}: {result.run_dir} "
                f"(last checkpoint {result.checkpoint})")
    for line in _short_run_lines(result.step, recipe_path, overrides, recipe):
        notices.say(line)


def _as_typed(recipe_path: str, overrides: tuple[str, ...]) -> str:
    """The recipe and its ``--set`` options, quoted for a shell: the resume command printed
    after a stop trains the same recipe (without them, another run's settings, or a refusal)."""
    return " ".join([shlex.quote(recipe_path),
                     *(f"--set {shlex.quote(override)}" for override in overrides)])


def _short_run_lines(steps: int, recipe_path: str, overrides: tuple[str, ...],
                     recipe: Any) -> list[str]:
    """What a short run's result is and what a real run needs, from the recipe as its file
    states it (without ``--set``; see :func:`imtrans.runner.summary.short_run_lines`)."""
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.runner.summary import SMOKE_TEST_STEPS, sample_dataset_lines, short_run_lines

    if steps >= SMOKE_TEST_STEPS:
        return []
    if not overrides:
        # The recipe ran as written: its own length, not a shortened smoke test (the CT
        # denoising recipe is 680 steps on its sample), so only the sample line applies.
        return sample_dataset_lines(recipe)
    try:
        full = load_recipe(recipe_path, registry=components()) if overrides else recipe
    except ImtransError:  # the file alone is not a whole recipe: say it of the run's
        full = recipe
    return short_run_lines(steps, full, recipe_path, run=recipe)


def _left_behind(made: list[MadeRunDir], text: str, *, kept_said: bool = True) -> str:
    """``text`` with what a failed start left behind: the run directory it made is removed
    when it holds nothing of value (see :mod:`imtrans.runs.failed_start`), else kept, which
    is said when ``kept_said``."""
    from imtrans.runs.failed_start import discard_failed_start, failed_start_note

    notes = []
    for run_dir in made:
        kept = discard_failed_start(run_dir.path, run_dir.outermost)
        if kept_said or not kept:
            notes.append(failed_start_note(run_dir.path, kept))
    return "; ".join([text, *notes] if text else notes)


def _say_left_behind(made: list[MadeRunDir], exc: ImtransError | OSError) -> None:
    """Remove what a failed start made, if worthless, and say so in its error line."""
    if not made:
        return
    if isinstance(exc, OSError) and exc.strerror:
        exc.strerror = _left_behind(made, exc.strerror)
    else:
        exc.args = (_left_behind(made, str(exc)),)


def _launch_processes(ctx: click.Context, nproc: int, recipe_path: str,
                     overrides: tuple[str, ...], resume: str | None, device: str,
                     output_dir: Path) -> None:
    """Run this command again as ``nproc`` processes through torchrun; exit with their code.

    ``resume`` is what the ranks get as ``--resume``: the checkpoint it resolved to, so every
    rank loads the same one (or ``auto`` for a run that starts in its own run directory).
    ``nproc`` above the usable CPU cores, or above the GPUs when ``device`` (``run.device``)
    trains on them, is refused before anything starts. torchrun dies with this process (on
    Linux; each rank then stops as after SIGTERM), so a ``kill -9`` of it leaves no rank.
    """
    import os
    import signal
    import subprocess
    import tempfile
    import time

    from imtrans.core.stop_signals import STOP_SIGNALS
    from imtrans.runs.checkpoints.lookup import AUTO
    from imtrans.training.threads import AUTO_MARK
    from imtrans.training.threads import ENVIRONMENT as THREAD_VARIABLES
    from imtrans.training.torchrun import RANK_REPORTS, report_ranks

    if "RANK" in os.environ:
        raise ImtransError("--nproc inside torchrun: use one or the other")
    _check_nproc(nproc, device)
    debug = ["--debug"] if ctx.obj and ctx.obj.get("debug") else []
    # torchrun's own log and traceback, and a rank's unexpected one, go to files kept in the
    # run directory (shown as they are with --debug); the ranks still write to the console.
    reports = None if debug else Path(tempfile.mkdtemp(prefix="imtrans-torchrun-"))
    launcher = (["torch.distributed.run"] if reports is None
                else ["imtrans.training.torchrun", str(reports)])
    env = os.environ | ({RANK_REPORTS: str(reports)} if reports is not None else {})
    if not any(name in os.environ for name in THREAD_VARIABLES):
        env[AUTO_MARK] = "1"  # torchrun's OMP_NUM_THREADS=1 for each rank is not the user's
    command = [sys.executable, "-m", *launcher, "--standalone",
               f"--nproc_per_node={nproc}", "-m", "imtrans", *debug, "run", recipe_path,
               *(arg for o in overrides for arg in ("--set", o)),
               *(["--resume", resume] if resume else []),
               *(["--allow-changes"] if ctx.params.get("allow_changes") else [])]
    started = time.time()
    # Windows refuses any preexec_fn (and has no prctl to call in one).
    process = subprocess.Popen(command, env=env, preexec_fn=_die_with_launcher
                               if sys.platform != "win32" else None)
    signalled = []

    def forward(signum: int, frame: Any) -> None:
        signalled.append(signum)
        process.send_signal(signum)

    # Ctrl-C reaches every process of the terminal's group already; SIGTERM and SIGHUP are
    # passed on to torchrun, which passes them on to the ranks: they agree on a step, rank 0
    # saves, all stop. torchrun itself then exits with 1 (and its own traceback): after a
    # signal, report 130.
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame:
                                             signalled.append(signum))}
    previous |= {stop: signal.signal(stop, forward)
                 for stop in STOP_SIGNALS if stop != signal.SIGINT}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code and signalled:
        sys.exit(EXIT_INTERRUPTED)
    if reports is not None:
        # A resume writes into the checkpoint's run (or a branch beside it), a new run under
        # run.output_dir.
        folders = [output_dir] + ([Path(resume).resolve().parent.parent.parent]
                                  if resume and resume != AUTO else [])
        report_ranks(reports, code, recipe_path, folders, started, nproc)  # one line, if failed
    sys.exit(code)


def _check_nproc(nproc: int, device: str) -> None:
    """Refuse more processes than usable CPU cores, or than GPUs when training on them: each
    rank holds torch and a copy of the networks (64 ranks on 2 cores took 19 GB)."""
    import torch

    from imtrans.data.workers import usable_cores

    cores = usable_cores()
    limits = [(cores, f"{cores} usable CPU core{'s' if cores != 1 else ''}")]
    on_gpus = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_gpus:
        gpus = torch.cuda.device_count()
        limits.append((gpus, f"{gpus} GPU{'s' if gpus != 1 else ''} (run.device = {device!r})"))
    limit, what = min(limits)
    if nproc > limit:
        raise InvalidArgumentError(f"--nproc {nproc}: this machine has {what}, one per "
                                   f"process; use --nproc {limit} or less")


def _die_with_launcher() -> None:
    """In torchrun, before it starts: ask for SIGTERM when this process ends (Linux only).

    torchrun turns SIGTERM into stopping its ranks (each saves as after SIGTERM); without it,
    a ``kill -9`` of ``imtrans run --nproc`` leaves torchrun and every rank training.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
