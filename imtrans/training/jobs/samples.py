"""Sample grids: every ``train.sample_every`` steps and at the last one, the fixed batch
translated (the trainer's labelled columns: ``real A | fake B | reconstructed A``...) to
``samples/step_N.png``, with the labels in ``samples/step_N.json``, published for the jobs
after it (``state.published.samples``: the trackers send it, the report shows it). With
``train.ema`` the generators' moving average translates: it is what translate, eval and export
use."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from imtrans.runs.directory import RunDir
from imtrans.trainers.base import Trainer
from imtrans.trainers.ema import GeneratorEMA
from imtrans.training.jobs.base import Job
from imtrans.training.sample_grid import save_grid
from imtrans.training.state import TrainingState

__all__ = ["SampleGrid", "write_samples"]


class SampleGrid(Job):
    """Writes the sample grid of the fixed batch (on the process that writes files) and
    publishes it.

    Args:
        every: ``train.sample_every``.
        trainer: Translates the batch.
        batch: The fixed sample batch (the same images all run long).
        run_dir: Where the grids go.
        ema: The generators' moving average, shown instead of the trained weights.
    """

    def __init__(self, every: int, trainer: Trainer, batch: dict[str, Tensor],
                 run_dir: RunDir, ema: GeneratorEMA | None = None) -> None:
        self.every, self.trainer, self.batch, self.run_dir = every, trainer, batch, run_dir
        self.ema = ema

    def due(self, state: TrainingState) -> bool:
        return state.step % self.every == 0 or state.finished

    def run(self, state: TrainingState) -> None:
        write_samples(self.trainer, self.batch, self.run_dir, state.step, ema=self.ema)
        state.published.samples = self.run_dir.sample(state.step)


def write_samples(trainer: Trainer, batch: dict[str, Tensor], run_dir: RunDir, step: int,
                  *, ema: GeneratorEMA | None = None) -> None:
    """Translate ``batch`` as the papers test: in training mode (batch statistics, dropout),
    with the RNG and batch-norm buffers restored after, so sampling changes nothing about
    training (and a resumed run stays identical to an uninterrupted one). Every generator
    pass of :meth:`~imtrans.trainers.Trainer.sample_images` (both directions of CycleGAN, the
    identity columns) runs inside that fork. With ``ema``, the averaged weights translate,
    swapped into the networks for the grid and the trained ones put back exactly after."""
    modules = list(trainer.modules().values())
    buffers = [b.clone() for m in modules for b in m.buffers()]
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    averaged = ema.swapped_in() if ema is not None else contextlib.nullcontext()
    with torch.random.fork_rng(devices=devices), averaged:
        save_grid(trainer.sample_images(batch), run_dir.sample(step))
    with torch.no_grad():
        for saved, buffer in zip(buffers, (b for m in modules for b in m.buffers()),
                                 strict=True):
            buffer.copy_(saved)
