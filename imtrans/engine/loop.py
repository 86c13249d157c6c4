"""The fit loop: build everything from a recipe, then train, log, sample and checkpoint.

Read it top to bottom: :func:`fit` is the whole of training. Steps are counted globally; the
epoch is ``step // steps_per_epoch``, so a checkpoint needs only the step to resume exactly.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imtrans.assembly import build_losses, build_networks, build_trainer
from imtrans.checkpoint import training as training_state
from imtrans.engine import distributed
from imtrans.data.batches import training_data
from imtrans.checkpoint.files import remove_stale_temporaries
from imtrans.data.sampler import batches_per_epoch
from imtrans.engine.loss_log import LossMeter, MetricsLog
from imtrans.engine.nonfinite import NonFiniteWatch, roll_back, stop_message
from imtrans.engine.observer import TrainingObserver
from imtrans.evaluation.periodic import PeriodicEvaluation
from imtrans.rundir import create_run_dir, write_run_record
from imtrans.engine.sample_grid import save_grid
from imtrans.engine.schedules import LRSchedule
from imtrans.engine.device import check_image_size, seed_everything, select_device
from imtrans.engine.speed import apply_speed
from imtrans.errors import ImtransError, NonFiniteError, TrainingInterrupted
from imtrans.plugins import Components, components
from imtrans.recipe import Recipe
from imtrans.report import write_report

__all__ = ["FitResult", "fit"]


@dataclass(frozen=True)
class FitResult:
    """Where a finished run left its files."""

    run_dir: Path
    step: int
    checkpoint: Path | None


def fit(recipe: Recipe, *, registry: Components | None = None, resume: Path | None = None,
        run_dir: Path | None = None, observer: TrainingObserver | None = None) -> FitResult:
    """Train ``recipe``; with ``resume`` (a checkpoint), continue exactly where it stopped.

    Args:
        recipe: A validated recipe.
        registry: The components (default: built-ins and installed plugins).
        resume: A checkpoint file to continue from; its run directory is written to.
        run_dir: Where to write (default: a new directory under ``run.output_dir``).
        observer: Receives progress and notices (default: silent).

    Returns:
        The run directory, the last step and the last checkpoint.

    Raises:
        TrainingInterrupted: Ctrl-C or SIGTERM; a checkpoint was saved first.
        ImtransError: bad data, an incompatible checkpoint, ...
    """
    registry = registry or components()
    observer = observer or TrainingObserver()
    if not distributed.is_main_process():  # under torchrun, rank 0 alone prints and writes
        observer = TrainingObserver()
    device = select_device(recipe.run.device, observer)
    ddp = distributed.setup(device)  # without torchrun: one process, nothing changes
    device = ddp.device
    seed_everything(recipe.run.seed)

    # Build: data, networks, losses, optimisers, schedule.
    data = training_data(recipe, registry, observer, device, rank=ddp.rank,
                         world_size=ddp.world_size)
    trainer = build_trainer(recipe, registry)
    networks = build_networks(recipe, registry, device)
    losses = {k: v.to(device) for k, v in build_losses(recipe, registry).items()}
    apply_speed(trainer, networks, recipe.speed, device)  # [speed]: precision, compile...
    trainer.setup(ddp.wrap(networks), losses, {k: t.on or k for k, t in recipe.losses.items()},
                  recipe.optim)
    schedule = LRSchedule(recipe.schedule, recipe.optim.lr, list(trainer.optimizers().values()))
    fixed = data.fixed_batch(recipe.train.sample_count, recipe.run.seed, device)
    check_image_size(networks, fixed, recipe)  # before anything is written
    evaluation = (PeriodicEvaluation(recipe, registry, device)
                  if PeriodicEvaluation.enabled(recipe) and ddp.is_main else None)
    # data.batch_size is per process: a step trains on batch_size x processes images.
    global_batch = recipe.data.batch_size * ddp.world_size
    steps_per_epoch = batches_per_epoch(len(data.dataset), global_batch)
    epochs = recipe.schedule.n_epochs + recipe.schedule.n_epochs_decay
    total_steps = epochs * steps_per_epoch
    if recipe.train.max_steps is not None:
        total_steps = min(total_steps, recipe.train.max_steps)

    # Where to write, and where to start from.
    step = 0
    if resume is not None:
        step = training_state.restore(resume, trainer, schedule, recipe, device)
        run_dir = run_dir or training_state.run_dir_of(resume)
    ddp.decorrelate_rng(recipe.run.seed, step)
    # A checkpoint outside a run directory continues into a new one.
    if ddp.is_main:
        run_dir = run_dir or create_run_dir(Path(recipe.run.output_dir),
                                            recipe.run.name or recipe.trainer.name)
    run_dir = ddp.share_path(run_dir)  # rank 0 created it; the others only know its name
    if resume is not None:
        observer.message(f"resuming {run_dir} from step {step} ({resume})")
    environment = (write_run_record(run_dir, recipe.resolved(), registry, device)
                   if ddp.is_main else {})
    checkpoints = run_dir / "checkpoints"
    samples_dir = run_dir / "samples"
    log = MetricsLog(run_dir / "metrics.jsonl")
    if ddp.is_main:
        samples_dir.mkdir(parents=True, exist_ok=True)
        log.truncate_after(step)  # records after the checkpoint will be written again
        remove_stale_temporaries(checkpoints)  # what a killed process was writing

    watch = NonFiniteWatch()  # NaN/inf flags, read at log steps and before saving

    def save() -> Path | None:
        if not ddp.is_main:  # every rank holds the same weights; rank 0 writes them
            return None
        fault = watch.check(step, trainer.modules())
        if fault is not None:  # never save a broken model over the last good one
            raise NonFiniteError(stop_message(fault, last, recipe))
        return training_state.save(checkpoints, trainer, schedule, step, steps_per_epoch,
                                   recipe, environment)

    meter, epoch_loss = LossMeter(), LossMeter()
    saved_at, saved_clock, last = -1, time.monotonic(), resume
    rollbacks = 0
    observer.on_start(total_steps=total_steps, start_step=step, steps_per_epoch=steps_per_epoch,
                      epochs=epochs, images_per_step=global_batch)
    clock, clock_step = time.perf_counter(), step
    trainer.train()
    try:
        with ddp.interrupts() if ddp.enabled else _sigterm_as_interrupt():
            while step < total_steps:
                epoch = step // steps_per_epoch
                lr = schedule.begin_epoch(epoch)
                data.batches.set_epoch(epoch, start=step % steps_per_epoch)
                for batch in data.batches:
                    out = trainer.training_step(batch)
                    meter.add(out)
                    epoch_loss.add({"G": out["G"]})
                    step += 1
                    watch.add(step, out)
                    observer.on_step(step, epoch)
                    log_due = step % recipe.train.log_every == 0 or step == total_steps
                    checkpoint_due = _checkpoint_due(recipe, step, total_steps,
                                                     steps_per_epoch, saved_clock)
                    evaluation_due = evaluation is not None and evaluation.due(
                        step, steps_per_epoch, total_steps)
                    fault = (watch.check(step, trainer.modules())
                             if log_due or checkpoint_due or evaluation_due else None)
                    if fault is not None:
                        if (recipe.train.on_nonfinite == "stop" or ddp.enabled or last is None
                                or rollbacks >= recipe.train.max_rollbacks):
                            raise NonFiniteError(stop_message(fault, last, recipe))
                        rollbacks += 1
                        step = roll_back(fault, last, trainer, schedule, recipe, device, log,
                                          observer, steps_per_epoch, rollbacks)
                        meter.flush()  # drop sums with NaN in them
                        epoch_loss.flush()
                        saved_at, clock, clock_step = -1, time.perf_counter(), step
                        break  # the epoch's batches start again after the skipped ones
                    if log_due:
                        now = time.perf_counter()
                        record = {"step": step, "epoch": epoch + 1, "lr": lr,
                                  "images_per_sec": (step - clock_step) * global_batch
                                  / max(now - clock, 1e-9),
                                  "losses": meter.flush()}  # the only read-back
                        if ddp.is_main:  # rank 0's losses, not the ranks' average
                            log.write(record)
                        observer.on_log(record)
                        clock, clock_step = time.perf_counter(), step
                    if ddp.is_main and (step % recipe.train.sample_every == 0
                                        or step == total_steps):
                        _write_samples(trainer, fixed, samples_dir / f"step_{step:08d}.png")
                        _refresh_report(run_dir, observer)
                    epoch_end = step % steps_per_epoch == 0
                    if epoch_end:
                        schedule.end_epoch(epoch, epoch_loss.flush()["G"])
                    if checkpoint_due:
                        last, saved_at, saved_clock = save(), step, time.monotonic()
                        if ddp.is_main:
                            training_state.prune(checkpoints, recipe.train, steps_per_epoch)
                    if evaluation is not None and evaluation_due:
                        if saved_at != step:  # the scored weights must exist as a file
                            last, saved_at, saved_clock = save(), step, time.monotonic()
                        _evaluate(evaluation, ddp.unwrapped(trainer), step, steps_per_epoch,
                                  last, checkpoints, log, observer)
                        _refresh_report(run_dir, observer)
                    if ddp.enabled and ddp.should_stop():  # a signal, agreed by all ranks
                        raise KeyboardInterrupt
                    if step >= total_steps:
                        break
    except KeyboardInterrupt:
        if saved_at != step:
            last = save()
        raise TrainingInterrupted(
            f"interrupted at step {step}; checkpoint saved to {last}. Resume with: "
            f"imtrans run RECIPE --resume {last}") from None
    finally:
        observer.on_end()
        ddp.close(trainer)  # what follows involves no other rank
        if data.skipped:
            observer.message(f"warning: skipped {len(data.skipped)} unusable image files, each "
                             f"replaced by the next usable one (set data.strict = true to stop "
                             f"instead): {', '.join(data.skipped[:3])}"
                             + (", ..." if len(data.skipped) > 3 else ""))
    if saved_at != step:
        last = save()
    if ddp.is_main:
        _refresh_report(run_dir, observer)
    return FitResult(run_dir, step, last)


def _evaluate(evaluation: PeriodicEvaluation, trainer: Any, step: int, steps_per_epoch: int,
              checkpoint: Path, checkpoints: Path, log: MetricsLog,
              observer: TrainingObserver) -> None:
    """Score the generator, log the scores, and keep the checkpoint if it is the best yet."""
    epoch = -(-step // steps_per_epoch)  # epochs begun: a final partial epoch counts
    scores = evaluation.evaluate(trainer, step, epoch)
    log.write({"step": step, "epoch": epoch, "eval": scores})
    best = evaluation.keep_if_best(checkpoints, checkpoint, scores, step, epoch)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in scores.items())
    observer.message(f"eval at step {step} (epoch {epoch}): {shown}"
                     + (f"; best {evaluation.metric} so far" if best else ""))


def _refresh_report(run_dir: Path, observer: TrainingObserver) -> None:
    """Rewrite report.html; a failure to write it is reported, never fatal to training."""
    try:
        write_report(run_dir)
    except ImtransError as exc:
        observer.message(f"warning: report.html not updated: {exc}")


def _checkpoint_due(recipe: Recipe, step: int, total_steps: int, steps_per_epoch: int,
                    saved_clock: float) -> bool:
    """Save at the end, every ``checkpoint_every`` steps, at the epoch ends retention keeps,
    and at other epoch ends once ``checkpoint_minutes`` have passed: writing a large model
    after every short epoch would cost more time than it could save."""
    train = recipe.train
    if step == total_steps or (train.checkpoint_every and step % train.checkpoint_every == 0):
        return True
    if step % steps_per_epoch:
        return False
    epochs_done = step // steps_per_epoch
    milestone = train.keep_every_epochs and epochs_done % train.keep_every_epochs == 0
    return bool(milestone) or time.monotonic() - saved_clock >= 60 * train.checkpoint_minutes


def _write_samples(trainer: Any, batch: dict[str, Tensor], path: Path) -> None:
    """Translate the fixed batch as the papers test: in training mode (batch statistics,
    dropout), with the RNG and batch-norm buffers restored after, so sampling changes
    nothing about training (and a resumed run stays identical to an uninterrupted one)."""
    modules = list(trainer.modules().values())
    buffers = [b.clone() for m in modules for b in m.buffers()]
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        save_grid(trainer.sample_images(batch), path)
    with torch.no_grad():
        for saved, buffer in zip(buffers, (b for m in modules for b in m.buffers()),
                                 strict=True):
            buffer.copy_(saved)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C (save, then stop) while training in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
