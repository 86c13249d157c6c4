"""torchrun for ``imtrans run --nproc``: when a rank dies, one line instead of tracebacks.

When a rank dies (killed by a signal, the out-of-memory killer), torchrun logs each process
it stops and ends with a Python traceback and a ``ChildFailedError`` table, and every other rank
prints the traceback of the collective that lost its peer: a hundred lines that bury what
happened. Three parts keep them in files and say it in one line:

- the launcher (:mod:`imtrans.cli.run`) runs ``python -m imtrans.training.torchrun REPORTS
  [torchrun arguments]`` with :data:`RANK_REPORTS` set to the folder ``REPORTS``;
- :func:`main` there runs torchrun unchanged, its log lines and final traceback going to
  ``REPORTS/torchrun.log`` and the rank that failed first, and how, to ``REPORTS/first.json``;
- a rank that fails with an unexpected exception writes its traceback to
  ``REPORTS/rank<N>.log`` (:func:`keep_rank_failure`) and exits with :data:`EXIT_RANK_FAILED`
  without printing it.

:func:`report_ranks` then keeps all of it as ``torchrun.log`` in the run directory and raises
one :class:`~imtrans.errors.ImtransError` naming the rank, how it ended and how to resume. With
``imtrans --debug`` none of this happens: torchrun and the ranks print as they always did.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from imtrans.errors import ImtransError

__all__ = ["EXIT_RANK_ERROR", "EXIT_RANK_FAILED", "RANK_REPORTS", "keep_rank_failure", "main",
           "report_ranks"]

#: Exit status of a rank that failed with an unexpected exception after keeping its traceback.
EXIT_RANK_FAILED = 3

#: Exit status of a rank that met an imtrans error and left its line to the launcher.
EXIT_RANK_ERROR = 4

#: The environment variable that tells each rank where the launcher keeps the reports.
RANK_REPORTS = "IMTRANS_RANK_REPORTS"

_LOG = "torchrun.log"
_FIRST = "first.json"


def main(argv: list[str]) -> int:
    """Run torchrun with ``argv[1:]``, its reports going to the folder ``argv[0]``."""
    reports = Path(argv[0])
    handler = logging.FileHandler(reports / _LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # torch installs its console handlers on "torch" and "torch.distributed" (and a few more,
    # which do not propagate): each logger that has one now writes to the file instead.
    for logger in [logging.getLogger("torch"), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger) and logger.name.startswith("torch") \
                and logger.handlers:
            logger.handlers = [handler]
    try:
        torchrun.main(argv[1:])
    except ChildFailedError as exc:
        rank, failure = _root_cause(exc.failures)
        first: dict[str, Any] = {"rank": rank, "pid": failure.pid, "exitcode": failure.exitcode}
        if failure.exitcode < 0:
            first["signal"] = failure.signal_name()
        (reports / _FIRST).write_text(json.dumps(first) + "\n", encoding="utf-8")
        _append(reports / _LOG, f"{traceback.format_exc()}\n{exc.format_msg()}\n")
        return 1
    except BaseException:  # its SignalException after SIGTERM, anything else: kept, not shown
        _append(reports / _LOG, traceback.format_exc())
        return 1
    return 0


def _root_cause(failures: dict[int, Any]) -> tuple[int, Any]:
    """The failure that ended the run. torchrun orders failures by time in whole seconds, so
    a rank killed outright and a rank that then lost it in a collective (exit status
    :data:`EXIT_RANK_FAILED`) tie; the killed one is the cause. SIGTERM is torchrun's own way
    of stopping the others."""
    def order(item: tuple[int, Any]) -> tuple[int, float, int]:
        number, failure = item
        code = failure.exitcode
        if code < 0 and -code != signal.SIGTERM:
            kind = 0  # killed outright: the cause
        elif code == EXIT_RANK_ERROR:
            kind = 1  # an imtrans error, which every rank may meet: the lowest rank's
        elif code == -signal.SIGTERM:
            kind = 3  # torchrun stopping the others
        else:
            kind = 2
        return kind, failure.timestamp, number

    return min(failures.items(), key=order)


def keep_rank_failure(message: str | None = None) -> None:
    """In a rank started by ``imtrans run --nproc`` (:data:`RANK_REPORTS` set), while an
    exception is handled: write its traceback (and ``message``, the one line of an imtrans
    error) to the reports folder and exit without printing them, with :data:`EXIT_RANK_ERROR`
    when there is a ``message``, else :data:`EXIT_RANK_FAILED`. Elsewhere (torchrun run by
    hand, ``--debug``) return, and the caller re-raises."""
    folder = os.environ.get(RANK_REPORTS)
    if not folder:
        return
    rank = os.environ.get("RANK", "0")
    try:
        _append(Path(folder) / f"rank{rank}.log", traceback.format_exc())
        if message is not None:
            (Path(folder) / f"rank{rank}.error").write_text(message, encoding="utf-8")
    except OSError:
        return  # printed as usual
    _exit_quietly(EXIT_RANK_FAILED if message is None else EXIT_RANK_ERROR)


def _exit_quietly(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: a broken process group can hang it


def report_ranks(reports: Path, code: int, recipe_path: str, folders: list[Path],
                 started: float, nproc: int = 1) -> None:
    """After torchrun ended with ``code``: when a rank failed, keep the reports as
    ``torchrun.log`` in the run directory (the one in ``folders`` whose ``train.log`` was
    written last, after ``started``) and raise one error naming the rank and how it ended,
    and the command that goes on (with ``--nproc nproc``: a checkpoint resumes with the
    process count that trained it).
    When that rank met an imtrans error (every rank may), its own message is raised instead,
    once; nothing is raised when the rank printed its line itself (exit status 1).

    Raises:
        ImtransError: the rank that failed first, how, how to resume, where the reports are;
            or the imtrans error the first failing rank met.
    """
    try:
        first_file = reports / _FIRST
        first = json.loads(first_file.read_text(encoding="utf-8")) if first_file.exists() \
            else None
        if code == 0:
            shutil.rmtree(reports, ignore_errors=True)
            return
        run_dir = _run_dir_written_since(folders, started)
        kept = _keep_reports(reports, run_dir)
    except (OSError, ValueError) as exc:
        raise ImtransError(f"the training processes failed (exit status {code}); their "
                           f"reports in {reports} could not be read: {exc}") from None
    if first is None:
        raise ImtransError(f"torchrun failed (exit status {code}) before a rank did; its "
                           f"report: {kept}")
    message = None
    if first["exitcode"] == EXIT_RANK_ERROR:
        message = _rank_error(reports, first["rank"])
    if first["exitcode"] == 1 or message is not None:
        how = None  # the rank printed its own error line, or left it to be printed here
    elif first.get("signal"):
        how = f"was killed by {first['signal']}"
    elif first["exitcode"] in (EXIT_RANK_FAILED, EXIT_RANK_ERROR):
        how = f"failed ({_last_line(reports, first['rank'], kept)})"
    else:
        how = f"exited with status {first['exitcode']}"
    if kept.parent != reports or message is not None:
        shutil.rmtree(reports, ignore_errors=True)
    if message is not None:
        raise ImtransError(message)  # as one process would say it, once for all ranks
    if how is None:
        return
    raise ImtransError(f"rank {first['rank']} (pid {first['pid']}) {how}, so torchrun stopped "
                       f"the other ranks; {_resume_hint(recipe_path, run_dir, nproc)} (torchrun's "
                       f"report: {kept})")


def _keep_reports(reports: Path, run_dir: Path | None) -> Path:
    """torchrun's log and the ranks' tracebacks as one file, in ``run_dir`` when there is
    one (else left in ``reports``); its path."""
    from imtrans.core.atomic import atomic_write

    parts = [reports / _LOG, *sorted(reports.glob("rank*.log"))]
    text = "".join(f"--- {part.name}\n{part.read_text(encoding='utf-8', errors='replace')}"
                   for part in parts if part.exists())
    if run_dir is None:
        kept = reports / "report.log"
        kept.write_text(text, encoding="utf-8")
        return kept
    kept = run_dir / _LOG
    atomic_write(kept, text)
    return kept


def _rank_error(reports: Path, rank: int) -> str | None:
    """The error line rank ``rank`` left to the launcher."""
    try:
        return (reports / f"rank{rank}.error").read_text(encoding="utf-8")
    except OSError:
        return None


def _last_line(reports: Path, rank: int, kept: Path) -> str:
    """The exception line of rank ``rank``'s traceback, shortened."""
    try:
        lines = (reports / f"rank{rank}.log").read_text(encoding="utf-8").strip().splitlines()
    except OSError:
        return f"see {kept}"
    last = lines[-1] if lines else "no traceback"
    return last if len(last) <= 200 else last[:197] + "..."


def _run_dir_written_since(folders: list[Path], started: float) -> Path | None:
    """The run directory in ``folders`` whose ``train.log`` was written last, after
    ``started`` (rank 0 logs every progress line there): the one this launch trained in."""
    newest: tuple[float, Path] | None = None
    for folder in folders:
        try:
            children = list(folder.iterdir())
        except OSError:
            continue
        for child in children:
            try:
                written = (child / "train.log").stat().st_mtime
            except OSError:
                continue
            if written >= started - 1 and (newest is None or written > newest[0]):
                newest = (written, child)
    return newest[1] if newest else None


def _resume_hint(recipe_path: str, run_dir: Path | None, nproc: int) -> str:
    """How to go on: from the run's last checkpoint, or from the start when it has none."""
    from imtrans.runs.checkpoints.files import latest_checkpoint
    from imtrans.runs.directory import RunDir

    command = f"imtrans run {recipe_path}" + (f" --nproc {nproc}" if nproc > 1 else "")
    last = latest_checkpoint(RunDir(run_dir).checkpoints) if run_dir is not None else None
    if last is None:
        return f"no checkpoint was saved: start again with {command}"
    return f"resume from its last checkpoint with: {command} --resume {run_dir}"


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
