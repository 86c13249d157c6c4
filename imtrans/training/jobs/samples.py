"""Sample grids: every ``train.sample_every`` steps and at the last one, the fixed batch
translated (the trainer's labelled columns: ``real A | fake B | reconstructed A``...) to
``samples/step_N.png``, with the labels in ``samples/step_N.json``, published for the jobs
after it (``state.published.samples``: the trackers send it, the report shows it). With
``train.ema`` the generators' moving average translates: it is what translate, eval and export
use. Each image shows as the recipe's ``[log] preview_bands`` and ``preview_window`` say
(:class:`~imtrans.training.sample_grid.GridPreview`)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor

from imtrans.data.value_range import DomainValues
from imtrans.recipe.schema import LogTable
from imtrans.runs.directory import RunDir
from imtrans.trainers.base import Trainer
from imtrans.trainers.ema import GeneratorEMA
from imtrans.training.jobs.base import Job
from imtrans.training.sample_grid import GridPreview, save_grid
from imtrans.training.state import TrainingState

__all__ = ["SampleGrid", "grid_preview", "write_samples"]


def grid_preview(log: LogTable, data: Any) -> GridPreview:
    """How the grids of a run show their images: ``[log] preview_bands`` and
    ``preview_window``, with the value ranges and file types of the training data (a
    :class:`~imtrans.data.batches.TrainingData`; its dataset's ``values``, which plugin
    datasets may lack: their data is taken as 8-bit)."""
    values = getattr(getattr(data, "dataset", None), "values", None)
    known = ({key: domain for key, domain in values.items() if isinstance(domain, DomainValues)}
             if isinstance(values, dict) else {})
    window = log.preview_window
    if not isinstance(window, str):
        window = (float(window[0]), float(window[1]))
    bands = tuple(log.preview_bands) if log.preview_bands else None
    return GridPreview(bands=bands, window=window, values=known or None)


class SampleGrid(Job):
    """Writes the sample grid of the fixed batch (on the process that writes files) and
    publishes it.

    Args:
        every: ``train.sample_every``.
        trainer: Translates the batch.
        batch: The fixed sample batch (the same images all run long).
        run_dir: Where the grids go.
        ema: The generators' moving average, shown instead of the trained weights.
        preview: How the images show (:func:`grid_preview`; default: as 8-bit data).
    """

    def __init__(self, every: int, trainer: Trainer, batch: dict[str, Tensor],
                 run_dir: RunDir, ema: GeneratorEMA | None = None,
                 preview: GridPreview | None = None) -> None:
        self.every, self.trainer, self.batch, self.run_dir = every, trainer, batch, run_dir
        self.ema, self.preview = ema, preview

    def due(self, state: TrainingState) -> bool:
        return state.step % self.every == 0 or state.finished

    def run(self, state: TrainingState) -> None:
        write_samples(self.trainer, self.batch, self.run_dir, state.step, ema=self.ema,
                      preview=self.preview)
        state.published.samples = self.run_dir.sample(state.step)


def write_samples(trainer: Trainer, batch: dict[str, Tensor], run_dir: RunDir, step: int,
                  *, ema: GeneratorEMA | None = None,
                  preview: GridPreview | None = None) -> None:
    """Translate ``batch`` as the papers test: in training mode (batch statistics, dropout),
    with the RNG and batch-norm buffers restored after, so sampling changes nothing about
    training (and a resumed run stays identical to an uninterrupted one). Every generator
    pass of :meth:`~imtrans.trainers.Trainer.sample_images` (both directions of CycleGAN, the
    identity columns) runs inside that fork. With ``ema``, the averaged weights translate,
    swapped into the networks for the grid and the trained ones put back exactly after.
    ``preview`` says how the images show (default: as 8-bit data)."""
    modules = list(trainer.modules().values())
    buffers = [b.clone() for m in modules for b in m.buffers()]
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    averaged = ema.swapped_in() if ema is not None else contextlib.nullcontext()
    with torch.random.fork_rng(devices=devices), averaged:
        save_grid(trainer.sample_images(batch), run_dir.sample(step), preview)
    with torch.no_grad():
        for saved, buffer in zip(buffers, (b for m in modules for b in m.buffers()),
                                 strict=True):
            buffer.copy_(saved)
