"""The MLflow backend: a run's recipe as params, scalars as metrics, sample grids as artifacts.

It talks to the tracking store through an ``MlflowClient`` holding its own run id, not through
``mlflow``'s global active run, so two loggers (or a user's own ``mlflow.start_run``) in one
process do not write to each other's runs. The MLflow run is created when the logger is built,
before training, so a missing package or an unreachable tracking server stops the run at once.
Needs the ``imtrans[mlflow]`` extra: ``mlflow-skinny`` (the client without the server and UI)
plus SQLAlchemy and Alembic for a local ``sqlite:`` store.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imtrans.loggers import import_extra, run_outcome

__all__ = ["MlflowLogger", "flatten_for_params"]

# MLflow's limits (mlflow.utils.validation): longer values are refused by older servers, and a
# log_batch call takes at most 100 params.
MAX_PARAM_VALUE_LENGTH = 6000
MAX_PARAMS_PER_BATCH = 100
MAX_KEY_LENGTH = 250
# Characters MLflow allows in param and metric names; others become "_".
_NOT_ALLOWED = re.compile(r"[^\w\-. /]")

_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}


class MlflowLogger:
    """Sends the run to an MLflow tracking store: one MLflow run per imtrans run.

    Args:
        run_dir: The run directory (recorded as the MLflow run's ``imtrans.run_dir`` tag).
        tracking_uri: Where the store is: ``http://host:5000`` (a tracking server),
            ``sqlite:///path/mlflow.db`` or ``databricks``. Default: MLflow's own choice,
            ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working folder.
        experiment: The MLflow experiment, created when it does not exist.
        run_name: The MLflow run's name (default: the run folder's name).

    Raises:
        MissingExtraError: ``mlflow`` is not installed (``pip install 'imtrans[mlflow]'``).
    """

    def __init__(
        self,
        *,
        run_dir: Path,
        tracking_uri: str | None = None,
        experiment: str = "imtrans",
        run_name: str | None = None,
    ) -> None:
        mlflow = import_extra("mlflow", logger="mlflow", extra="mlflow")
        self._entities: Any = import_extra("mlflow.entities", logger="mlflow", extra="mlflow")
        uri = tracking_uri or mlflow.get_tracking_uri()
        if uri.split(":", 1)[0].split("+", 1)[0] in _DATABASE_SCHEMES:
            # mlflow-skinny opens a database store only with these two installed; without
            # them its error is about a "model registry".
            import_extra("sqlalchemy", logger="mlflow", extra="mlflow")
            import_extra("alembic", logger="mlflow", extra="mlflow")
        run_dir = Path(run_dir)
        self._client: Any = mlflow.MlflowClient(tracking_uri=uri)
        run = self._client.create_run(
            _experiment_id(self._client, experiment),
            run_name=run_name or run_dir.name,
            tags={"imtrans.run_dir": str(run_dir.resolve())},
        )
        self.run_id: str = run.info.run_id
        self._closed = False

    def log_hyperparameters(self, resolved_recipe: Mapping[str, Any]) -> None:
        """Log the recipe as params named ``table.key``, in batches MLflow accepts."""
        params = [self._entities.Param(key, value)
                  for key, value in flatten_for_params(resolved_recipe).items()]
        for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=params[start:start + MAX_PARAMS_PER_BATCH])

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Log the values as metrics at ``step`` (one request for all of them)."""
        now = int(time.time() * 1000)
        metrics = [self._entities.Metric(_key(name), float(value), now, step)
                   for name, value in values.items()]
        self._client.log_batch(self.run_id, metrics=metrics)

    def log_image(self, step: int, name: str, path: Path) -> None:
        """Upload the image file as the artifact ``<name>/step_<step>.<ext>``."""
        # Named after the step whatever the file is called, so the artifacts sort by step and
        # a grid never replaces another's.
        with tempfile.TemporaryDirectory() as folder:
            staged = Path(folder) / f"step_{step:08d}{Path(path).suffix}"
            shutil.copyfile(path, staged)
            self._client.log_artifact(self.run_id, str(staged), artifact_path=name)

    def close(self) -> None:
        """End the MLflow run: FINISHED, KILLED (interrupted) or FAILED; the second call
        does nothing."""
        if self._closed:
            return
        self._closed = True
        self._client.set_terminated(self.run_id, status=_STATUS[run_outcome()])


def flatten_for_params(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested tables to ``"table.key" -> text``, as MLflow params take them.

    Strings stay as they are, everything else becomes its JSON text (``true``, ``[0.5, 0.999]``,
    as in the recipe); ``None`` is left out. Names and values are cut to MLflow's limits.

    >>> flatten_for_params({"optim": {"lr": 0.0002, "betas": [0.5, 0.999]}, "amp": False})
    {'optim.lr': '0.0002', 'optim.betas': '[0.5, 0.999]', 'amp': 'false'}
    """
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_for_params(value, f"{name}."))
        elif value is not None:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            flat[_key(name)] = text[:MAX_PARAM_VALUE_LENGTH]
    return flat


def _key(name: str) -> str:
    """``name`` as MLflow accepts it: allowed characters only, at most 250 of them."""
    return _NOT_ALLOWED.sub("_", name)[:MAX_KEY_LENGTH]


def _experiment_id(client: Any, name: str) -> str:
    """The id of the experiment ``name``, created if missing (by us or, racing, by another)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # another process created it between the two calls
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)
