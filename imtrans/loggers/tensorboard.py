"""The TensorBoard backend: a run's scalars, sample grids and recipe as event files.

Everything goes to one event file under ``<run>/tb/``, so ``tensorboard --logdir runs/NAME/tb``
(or ``--logdir runs`` to compare runs) shows it. The writer is PyTorch's
``torch.utils.tensorboard.SummaryWriter``, which needs the ``tensorboard`` package (the
``imtrans[tensorboard]`` extra); the hyperparameters are written with TensorBoard's own hparams
API so the HPARAMS tab lists the recipe, with each value keeping its type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imtrans.loggers import import_extra

__all__ = ["TensorBoardLogger", "flatten_for_hparams"]


class TensorBoardLogger:
    """Writes the run to TensorBoard: one event file in the run's tb folder.

    Args:
        run_dir: The run directory.
        flush_secs: Seconds between writes of buffered events to disk (and so how far behind
            a TensorBoard watching the run can be); everything is written at close.

    Raises:
        MissingExtraError: ``tensorboard`` is not installed
            (``pip install 'imtrans[tensorboard]'``).
    """

    def __init__(self, *, run_dir: Path, flush_secs: int = 30) -> None:
        # The package itself first, so that a missing one is named as such, not as the
        # torch.utils.tensorboard module that needs it.
        import_extra("tensorboard", logger="tensorboard", extra="tensorboard")
        tb = import_extra("torch.utils.tensorboard", logger="tensorboard", extra="tensorboard")
        self._hparams_api = import_extra(
            "tensorboard.plugins.hparams.summary_v2", logger="tensorboard", extra="tensorboard"
        )
        self.log_dir = Path(run_dir) / "tb"
        self._trial = Path(run_dir).name
        self._writer: Any = tb.SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs)
        self._closed = False

    def log_hyperparameters(self, resolved_recipe: Mapping[str, Any]) -> None:
        """Write the recipe, flattened to ``table.key``, for the HPARAMS tab and as text."""
        flat = flatten_for_hparams(resolved_recipe)
        # TensorBoard's own hparams summary, not SummaryWriter.add_hparams: that one writes a
        # second event file in a sub-folder and stores booleans as numbers.
        summary = self._hparams_api.hparams_pb(flat, trial_id=self._trial)
        self._writer.file_writer.add_summary(summary)
        lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in flat.items())
        self._writer.add_text("recipe", f"```\n{lines}\n```")

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One scalar per name; ``loss/G`` lands in TensorBoard's ``loss`` section."""
        for name, value in values.items():
            self._writer.add_scalar(name, float(value), global_step=step)

    def log_image(self, step: int, name: str, path: Path) -> None:
        """Read the image file and write it under ``name`` at ``step``."""
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        self._writer.add_image(name, pixels, global_step=step, dataformats="HWC")

    def close(self) -> None:
        """Write what is buffered and close the event file (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()


def flatten_for_hparams(
    table: Mapping[str, Any], prefix: str = ""
) -> dict[str, str | int | float | bool]:
    """Nested tables to ``"table.key" -> value``, as TensorBoard's hparams take them.

    Strings, numbers and booleans stay as they are; lists (and anything else) become their JSON
    text, since an hparam holds one scalar. ``None`` is left out.

    >>> flatten_for_hparams({"optim": {"lr": 0.0002, "betas": [0.5, 0.999]}, "amp": False})
    {'optim.lr': 0.0002, 'optim.betas': '[0.5, 0.999]', 'amp': False}
    """
    flat: dict[str, str | int | float | bool] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_for_hparams(value, f"{name}."))
        elif isinstance(value, str | int | float | bool):
            flat[name] = value
        elif value is not None:
            flat[name] = json.dumps(value, default=str)
    return flat
