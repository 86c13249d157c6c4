"""Saving and restoring everything a run needs to continue exactly where it stopped.

A training checkpoint holds, as tensors: every network's weights (``net.<name>.*``), every
optimiser's state (``optim.<name>.*``), the RNG states (``rng.*``) and the trainer's extra
state such as image pools (``trainer.*``), and with ``train.ema`` the generators' moving
average (``ema.<role>.*``, see :mod:`imtrans.trainers.ema`); and in its manifest: the step
and epoch, the resolved recipe, the optimisers' hyperparameters, the schedule state, the
environment, the number of processes that trained it and their batch size (``processes``,
``batch_size``: the global batch decides where a step falls in the data and the schedule)
and, with an average, its decay and roles (``ema``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from imtrans.core.distributed import unwrap
from imtrans.core.state_tensors import (
    load_module_tensors,
    load_optimizer_tensors,
    module_tensors,
    optimizer_tensors,
    restore_rng,
    rng_tensors,
    tensors_with_prefix,
)
from imtrans.errors import CheckpointError
from imtrans.recipe import Recipe, TrainTable
from imtrans.runs.checkpoints.files import (
    checkpoint_name,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from imtrans.trainers.base import Trainer, load_trainer_state_tensors, trainer_state_tensors
from imtrans.trainers.ema import EMA_PREFIX, GeneratorEMA
from imtrans.training.schedules import LRSchedule

__all__ = ["TASK_DATA_KEYS", "TASK_TABLES", "check_processes", "prune", "restore", "save",
           "task_changes"]

#: Recipe tables that decide the shapes of the saved tensors; a resume must agree on them.
ARCHITECTURE = ("trainer", "generator", "discriminator")


def save(directory: Path, trainer: Trainer, schedule: LRSchedule, step: int,
         steps_per_epoch: int, recipe: Recipe, environment: dict[str, Any], *,
         extra: dict[str, Any] | None = None, ema: GeneratorEMA | None = None,
         processes: int = 1) -> Path:
    """Write the checkpoint of ``step`` into ``directory``; return its path.

    ``extra`` adds manifest entries (``imported``: where an imported run came from); ``ema``,
    the generators' moving average, is saved as ``ema.<role>.*`` (its decay and roles in the
    manifest's ``ema``); ``processes``, how many trained it (each with ``data.batch_size``),
    is recorded for :func:`restore` to check."""
    tensors: dict[str, torch.Tensor] = {}
    optimizers: dict[str, Any] = {}
    for name, module in trainer.modules().items():
        # DDP's wrapper adds "module." to names; checkpoints keep the network's own names.
        tensors |= module_tensors(f"net.{name}", unwrap(module))
    for name, optimizer in trainer.optimizers().items():
        state, optimizers[name] = optimizer_tensors(f"optim.{name}", optimizer)
        tensors |= state
    tensors |= rng_tensors("rng")
    tensors |= {f"trainer.{k}": v for k, v in trainer_state_tensors(trainer).items()}
    if ema is not None:
        tensors |= ema.tensors(EMA_PREFIX)
    epoch_end = step // steps_per_epoch if step % steps_per_epoch == 0 else None
    manifest = {
        "step": step,
        "epoch": step // steps_per_epoch,
        "recipe": recipe.resolved(),
        "optimizers": optimizers,
        "schedule": schedule.state(),
        "environment": environment,
        "processes": processes,
        "batch_size": recipe.data.batch_size,
    } | ({"ema": {"decay": ema.decay, "roles": ema.roles}} if ema is not None else {}) \
      | (extra or {})
    directory.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(directory / checkpoint_name(step, epoch_end=epoch_end), tensors,
                           manifest)


def restore(path: Path, trainer: Trainer, schedule: LRSchedule, recipe: Recipe,
            device: torch.device, *, notes: list[str] | None = None,
            changes: dict[str, list[Any]] | None = None,
            ema: GeneratorEMA | None = None, processes: int = 1) -> int:
    """Load ``path`` into a trainer built from ``recipe``; return the step to continue from.

    ``notes`` receives warnings about settings that make the continuation differ from the
    run the checkpoint came from (such as a resize filter that did not exist then), and
    ``changes`` the task settings that differ (see :func:`task_changes`). ``ema`` (the run's
    ``train.ema``) is loaded from the checkpoint's average; a checkpoint without one starts it
    from the loaded weights, and an average the run does not keep is ignored (both noted).
    ``processes`` is how many train the continuation (see :func:`check_processes`).

    Raises:
        CheckpointError: the checkpoint is unreadable, was made with different networks
            (the message names the component and the setting that differs), by another
            number of processes at another global batch, or holds trainer state (such as an
            image pool) this trainer cannot take.
    """
    checkpoint = load_checkpoint(path)
    manifest = checkpoint.manifest
    _check_architecture(manifest.get("recipe", {}), recipe.resolved(), path)
    check_processes(manifest, recipe, processes, path, notes, changes)
    if notes is not None:
        notes += _changed_defaults(manifest.get("recipe", {}), recipe)
    if changes is not None and "imported" not in manifest:
        # An imported checkpoint was never trained here: resuming it is fine-tuning, and
        # its data, losses and schedule are the user's to choose.
        changes |= task_changes(manifest.get("recipe", {}), recipe)
    tensors = checkpoint.tensors
    try:
        for name, module in trainer.modules().items():
            load_module_tensors(f"net.{name}", unwrap(module), tensors)
        for name, optimizer in trainer.optimizers().items():
            load_optimizer_tensors(f"optim.{name}", optimizer, tensors,
                                   manifest["optimizers"][name])
        try:
            load_trainer_state_tensors(trainer, tensors_with_prefix(tensors, "trainer"),
                                       device)
        except (CheckpointError, RuntimeError) as exc:
            # torch's own errors (a shape that does not fit a buffer) keep their words; the
            # keys the trainer names sit under "trainer." in the file.
            raise CheckpointError(f"{path}: trainer state: {exc}") from exc
        schedule.load_state(manifest["schedule"])
        restore_rng(tensors, "rng")
        _restore_ema(ema, tensors, path, notes)
        return int(manifest["step"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: incomplete training checkpoint: missing or malformed "
                              f"{exc}") from None


def check_processes(manifest: dict[str, Any], recipe: Recipe, processes: int, path: Path,
                    notes: list[str] | None = None,
                    changes: dict[str, list[Any]] | None = None) -> None:
    """Refuse to continue a checkpoint with another global batch than it was trained with.

    A step's place in the data (its epoch and batch) and in the schedule is reckoned at the
    global batch, ``processes x data.batch_size``: over 4 images, 4 steps of 2 processes x 1
    image are 2 epochs, of 1 process x 1 image 1 epoch. Another process count at the
    same global batch continues in the same place: it goes into ``changes`` (recorded, like
    the ``data.batch_size`` that changed with it). A checkpoint older than this record is
    taken to have been trained as this run is (said in ``notes``); step 0 and imported
    checkpoints have no place to keep.

    Raises:
        CheckpointError: another global batch, in one line naming both counts and batch sizes
            and the commands that continue; or a malformed record.
    """
    step, saved = manifest.get("step"), manifest.get("processes")
    if "imported" in manifest or step == 0:
        return
    batch = recipe.data.batch_size
    if saved is None:
        if notes is not None:
            notes.append(f"{path.name} predates the record of the process count: it is taken "
                         f"to have been trained as this run is, by {_processes(processes)} of "
                         f"data.batch_size {batch}; if it was not, resume it with that count")
        return
    saved_batch = manifest.get("batch_size")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
               for n in (saved, saved_batch)):
        raise CheckpointError(f"{path}: malformed process record (processes {saved!r}, "
                              f"batch_size {saved_batch!r})")
    if saved == processes:
        return  # a batch size change is a task change (task_changes): as before
    if saved * saved_batch == processes * batch:
        if changes is not None:
            changes["processes (--nproc)"] = [saved, processes]
        return
    global_batch = saved * saved_batch
    same = (f", or keep {global_batch} images a step: --nproc {processes} --set "
            f"data.batch_size={global_batch // processes} --allow-changes"
            if global_batch % processes == 0 else "")
    raise CheckpointError(
        f"{path} was trained by {_processes(saved)} of data.batch_size {saved_batch} "
        f"({global_batch} images a step), this run has {_processes(processes)} of "
        f"data.batch_size {batch} ({processes * batch} a step): its step {step} would fall in "
        f"another place of the epochs and the schedule. Resume it with {_processes(saved)} "
        f"(--nproc {saved}){same}")


def _processes(count: int) -> str:
    return f"{count} process{'es' if count != 1 else ''}"


def _restore_ema(ema: GeneratorEMA | None, tensors: dict[str, torch.Tensor], path: Path,
                 notes: list[str] | None) -> None:
    """Load the average of ``path`` into ``ema`` (after the networks: a checkpoint without
    one restarts it from their loaded weights)."""
    held = GeneratorEMA.held_by(tensors, EMA_PREFIX)
    said: list[str] = []
    if ema is not None and held:
        ema.load_tensors(tensors, EMA_PREFIX)
    elif ema is not None:
        ema.reset()
        said.append(f"{path.name} holds no generator EMA: train.ema starts it from the "
                    "checkpoint's weights")
    elif held:
        said.append(f"{path.name} holds a generator EMA, which this run ignores (train.ema is "
                    "off): its checkpoints will hold none")
    if notes is not None:
        notes += said


def prune(directory: Path, train: TrainTable) -> None:
    """Apply the recipe's retention: the newest ``keep_last`` plus every N-th epoch's."""
    prune_checkpoints(directory, keep_last=train.keep_last,
                      keep_every_epochs=train.keep_every_epochs or None)


#: What decides the task a run trains on; a resume with other values is another experiment.
#: Whole tables, and the keys of [data] (loading processes, cache and the like are not here).
TASK_TABLES = ("trainer", "losses", "optim", "schedule")
TASK_DATA_KEYS = ("name", "root", "split", "direction", "batch_size", "in_channels",
                  "out_channels", "preprocess", "load_size", "crop_size", "flip",
                  "resize_filter", "max_items", "official_order")


def task_changes(saved: dict[str, Any], recipe: Recipe) -> dict[str, list[Any]]:
    """The settings that decide the task and differ between a checkpoint's recipe and
    ``recipe``, as ``{"optim.lr": [saved, now]}``; keys newer than the checkpoint are left to
    :func:`_changed_defaults`.

    Example:
        >>> task_changes({"optim": {"lr": 0.0002}}, recipe)  # doctest: +SKIP
        {'optim.lr': [0.0002, 0.0001]}
    """
    current = recipe.resolved()
    pairs: list[tuple[str, Any, Any]] = []
    for table in TASK_TABLES:
        old, new = _flat(saved.get(table, {}), table), _flat(current.get(table, {}), table)
        pairs += [(path, old[path], new.get(path)) for path in sorted(old)]
    old, new = saved.get("data", {}), current.get("data", {})
    pairs += [(f"data.{key}", old[key], new.get(key)) for key in TASK_DATA_KEYS if key in old]
    return {path: [was, now] for path, was, now in pairs if was != now}


def _flat(table: Any, prefix: str) -> dict[str, Any]:
    """A nested table as ``{"losses.cycle.weight": 10.0, ...}``."""
    if not isinstance(table, dict):
        return {prefix: table}
    flat: dict[str, Any] = {}
    for key, value in table.items():
        flat |= _flat(value, f"{prefix}.{key}")
    return flat


def _changed_defaults(saved: dict[str, Any], recipe: Recipe) -> list[str]:
    """Settings whose default changed since the checkpoint's run was recorded."""
    data = saved.get("data", {})
    if data and "resize_filter" not in data and recipe.data.resize_filter != "opencv_cubic":
        return ["this checkpoint's run predates data.resize_filter and resized with OpenCV's "
                f"cubic filter; this run resizes with {recipe.data.resize_filter!r}: pass "
                "--set data.resize_filter=opencv_cubic to continue it exactly"]
    return []


def _check_architecture(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Name the first setting that makes the saved networks differ from the recipe's."""
    sections = [*ARCHITECTURE, "data"]
    for section in sections:
        old, new = saved.get(section, {}), current.get(section, {})
        keys = ["in_channels", "out_channels"] if section == "data" else sorted({*old, *new})
        for key in keys:
            if section != "data" and old and key not in old:
                # A setting newer than the checkpoint (it ran with that setting's default);
                # the strict tensor load still refuses any shape it would change.
                continue
            if old.get(key) != new.get(key):
                raise CheckpointError(
                    f"{path} does not match the recipe: [{section}] {key} is "
                    f"{old.get(key)!r} in the checkpoint but {new.get(key)!r} in the recipe")

