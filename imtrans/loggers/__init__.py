"""Metrics loggers: where a run's records go besides ``metrics.jsonl``.

``metrics.jsonl`` is always written (the report, resume and ``imtrans eval`` read it). The
recipe's ``[log]`` table adds backends by name, ``backends = ["jsonl", "tensorboard"]``; each
is a builder in the ``loggers`` registry (:func:`imtrans.core.hookspecs.register_loggers`), called
with ``run_dir`` and the options of ``[log.<name>]``, and returns a
:class:`imtrans.core.contracts.MetricsLogger`. The built-in ones (TensorBoard, W&B, MLflow) each
need an optional extra (``pip install 'imtrans[tensorboard]'``).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Literal

from imtrans.errors import ImtransError

__all__ = ["MissingExtraError", "import_extra", "run_outcome"]


class MissingExtraError(ImtransError):
    """A logger backend's package is missing or broken; the message names the extra."""


def import_extra(module: str, *, logger: str, extra: str) -> ModuleType:
    """Import ``module`` for the ``logger`` backend, or say which extra to install.

    Raises:
        MissingExtraError: the import failed (not installed, or broken: the cause is shown).
    """
    try:
        return importlib.import_module(module)
    except Exception as exc:  # a broken install fails with anything, not only ImportError
        raise MissingExtraError(
            f"the {logger} logger needs the {module!r} package, which failed to import "
            f"({type(exc).__name__}: {exc}); install it with: pip install 'imtrans[{extra}]'"
        ) from exc


def run_outcome() -> Literal["finished", "interrupted", "failed"]:
    """How the run is ending, read from the exception being handled when ``close`` is called.

    The training loop closes its loggers inside its exception handlers after a failure, a
    Ctrl-C or a stop request, and outside them after a finished run.
    """
    exc = sys.exc_info()[1]
    if exc is None:
        return "finished"
    from imtrans.core.stop_signals import StopRequested
    from imtrans.errors import TrainingInterrupted

    if isinstance(exc, KeyboardInterrupt | StopRequested | TrainingInterrupted):
        return "interrupted"
    return "failed"
