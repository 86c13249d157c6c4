"""The run's records, to ``metrics.jsonl`` and to the recipe's logger backends at once.

Jobs write records to one :class:`RunLog`; it appends each to ``metrics.jsonl`` (what the
report, resume and the tests read) and passes its numbers on to every tracker
(:class:`imtrans.core.contracts.MetricsLogger`) as scalars: ``loss/<term>``, ``lr``,
``images_per_sec``, ``data_wait_fraction``, ``eval/<metric>``. The values are the ones the
record already read from the device; a tracker never causes a read of its own. A tracker that
fails is switched off with a warning: a run is worth more than one of its copies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from imtrans.core.components import Components
from imtrans.core.contracts import MetricsLogger
from imtrans.core.observer import TrainingObserver
from imtrans.errors import ImtransError
from imtrans.recipe.schema import Recipe
from imtrans.training.loss_log import MetricsLog

__all__ = ["RunLog", "open_trackers", "scalars_of"]


class RunLog(MetricsLog):
    """``metrics.jsonl`` plus the trackers.

    Args:
        path: The run's ``metrics.jsonl``.
        trackers: ``(name, logger)`` pairs, from :func:`open_trackers`.
        observer: Told when a tracker fails.
    """

    def __init__(self, path: Path, trackers: Sequence[tuple[str, MetricsLogger]] = (),
                 observer: TrainingObserver | None = None) -> None:
        super().__init__(path)
        self.trackers = dict(trackers)
        self.observer = observer or TrainingObserver()

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` to ``metrics.jsonl`` and send its numbers to the trackers."""
        super().write(record)
        scalars = scalars_of(record)
        if scalars:
            self._each(lambda logger: logger.log_scalars(int(record["step"]), scalars))

    def hyperparameters(self, resolved_recipe: Mapping[str, Any]) -> None:
        """Send the resolved recipe to the trackers (once, at the start)."""
        self._each(lambda logger: logger.log_hyperparameters(resolved_recipe))

    def image(self, step: int, name: str, path: Path) -> None:
        """Send an image file (a sample grid) to the trackers."""
        self._each(lambda logger: logger.log_image(step, name, path))

    def close(self) -> None:
        """Close every tracker (safe to call twice)."""
        trackers, self.trackers = self.trackers, {}
        for name, logger in trackers.items():
            try:
                logger.close()
            except Exception as exc:  # closing one must not stop the others closing
                self.observer.message(f"warning: the {name} logger failed to close: "
                                      f"{type(exc).__name__}: {exc}")

    def _each(self, call: Callable[[MetricsLogger], None]) -> None:
        for name, logger in list(self.trackers.items()):
            try:
                call(logger)
            except Exception as exc:  # a tracker's outage must not end the run
                del self.trackers[name]
                self.observer.message(f"warning: the {name} logger failed and is off for the "
                                      f"rest of the run: {type(exc).__name__}: {exc}")


def scalars_of(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a metrics record, under the names trackers receive them.

    >>> scalars_of({"step": 5, "epoch": 1, "lr": 2e-4, "images_per_sec": 3.5,
    ...             "losses": {"G": 1.5}, "eval": {"fid": 80.0}})
    {'lr': 0.0002, 'images_per_sec': 3.5, 'loss/G': 1.5, 'eval/fid': 80.0}
    """
    scalars = {key: float(record[key]) for key in ("lr", "images_per_sec", "data_wait_fraction")
               if isinstance(record.get(key), int | float)}
    for group, prefix in (("losses", "loss"), ("eval", "eval")):
        for name, value in (record.get(group) or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                scalars[f"{prefix}/{name}"] = float(value)
    return scalars


def open_trackers(recipe: Recipe, registry: Components, run_dir: Path
                  ) -> list[tuple[str, MetricsLogger]]:
    """Build the recipe's logger backends (``[log] backends``) for ``run_dir``.

    Raises:
        ImtransError: a backend cannot start (its package is missing: the message names the
            extra to install). Backends already started are closed first.
    """
    opened: list[tuple[str, MetricsLogger]] = []
    try:
        for name in recipe.log.trackers:
            opened.append((name, _start(registry, name, recipe.log.options(name), run_dir)))
    except BaseException:
        for _, logger in opened:
            logger.close()
        raise
    return opened


def _start(registry: Components, name: str, options: dict[str, Any], run_dir: Path
           ) -> MetricsLogger:
    """Build one backend; a plugin's unexpected exception becomes an error naming it."""
    try:
        logger: MetricsLogger = registry.loggers.create(name, f"[log.{name}]",
                                                        run_dir=run_dir, **options)
    except ImtransError:
        raise
    except Exception as exc:
        raise ImtransError(f"the {name} logger failed to start: "
                           f"{type(exc).__name__}: {exc}") from exc
    return logger
