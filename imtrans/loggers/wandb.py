"""The Weights & Biases backend: a run's recipe, scalars and sample grids as a W&B run.

The W&B run starts when the logger is built, before training, so a missing package, a missing
login or an unreachable server stops the run at once instead of after the first steps. Its
local files go to ``<run>/wandb/``; an offline run (``mode = "offline"``, or
``WANDB_MODE=offline``) stays there until ``wandb sync`` uploads it. Needs the ``wandb``
package (the ``imtrans[wandb]`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from imtrans.loggers import import_extra, run_outcome

__all__ = ["WandbLogger"]


class WandbLogger:
    """Sends the run to Weights & Biases: one W&B run per imtrans run, named after its folder.

    Args:
        run_dir: The run directory; W&B's local files go to ``<run_dir>/wandb/``.
        project: The W&B project.
        entity: The W&B team or user (default: the login's default entity).
        mode: ``"online"``, ``"offline"`` (written locally, uploaded later by ``wandb sync``)
            or ``"disabled"``; default: W&B's own choice (``WANDB_MODE``, else online).
        tags: Tags of the W&B run.

    Raises:
        MissingExtraError: ``wandb`` is not installed (``pip install 'imtrans[wandb]'``).
    """

    def __init__(
        self,
        *,
        run_dir: Path,
        project: str = "imtrans",
        entity: str | None = None,
        mode: Literal["online", "offline", "disabled", None] = None,
        tags: list[str] | None = None,
    ) -> None:
        self._wandb: Any = import_extra("wandb", logger="wandb", extra="wandb")
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)  # W&B falls back to a temp folder otherwise
        self._run: Any = self._wandb.init(
            project=project,
            entity=entity,
            name=run_dir.name,
            dir=str(run_dir),
            mode=mode,
            tags=list(tags or ()),
            # A run of its own even when this process already has one (two loggers, a
            # notebook): the default would hand back the other run.
            reinit="create_new",
        )
        self._closed = False

    def log_hyperparameters(self, resolved_recipe: Mapping[str, Any]) -> None:
        """The resolved recipe becomes the W&B run's config, tables as nested keys."""
        self._run.config.update(dict(resolved_recipe), allow_val_change=True)

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Log the values at ``step``; W&B groups ``loss/G`` in a ``loss`` section."""
        self._run.log(dict(values), step=step)

    def log_image(self, step: int, name: str, path: Path) -> None:
        """Upload the image file as ``name`` at ``step``."""
        self._run.log({name: self._wandb.Image(str(path))}, step=step)

    def close(self) -> None:
        """Finish the W&B run; marked failed when training failed (see :func:`run_outcome`).

        W&B's service process outlives its runs until this process exits; it is shut down
        here too unless another W&B run of this process is still open. A second call does
        nothing.
        """
        if self._closed:
            return
        self._closed = True
        # A stopped run is not a failed one: it has its checkpoint and can be resumed.
        self._run.finish(exit_code=1 if run_outcome() == "failed" else 0)
        if not _other_runs_open(self._wandb):
            self._wandb.teardown()


def _other_runs_open(wandb: Any) -> bool:
    """Whether this process still has an open W&B run (of a user's, or another logger's).

    W&B has no public way to ask; its setup singleton's list is read, and when that is gone
    (another W&B version) the answer is no, so the service is shut down as after any run.
    """
    setup = getattr(getattr(wandb, "sdk", None), "wandb_setup", None)
    singleton = getattr(setup, "_singleton", None)
    return bool(getattr(singleton, "_active_runs", None))
