"""One build of a training run: data, trainer, networks, losses, speed switches, optimisers and
schedule, in the order that makes a seeded run reproducible.

:func:`build_training` is the only place this sequence is written: the fit loop, ``imtrans
bench`` and the tests all build through it.

Example:
    >>> import torch
    >>> from imtrans.catalogue.recipe_loader import load_recipe
    >>> recipe = load_recipe("recipes/pix2pix_edges2shoes.toml",
    ...                      ["generator.ngf=4", "discriminator.ndf=4"])
    >>> training = build_training(recipe, device=torch.device("meta"), data=False)
    >>> sorted(training.trainer.modules()), sorted(training.trainer.optimizers())
    (['disc', 'gen'], ['disc', 'gen'])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from imtrans.catalogue.assembly import (
    build_losses,
    build_networks,
    build_trainer,
    loss_terms,
    optimizer_factory,
)
from imtrans.catalogue.plugins import Components, components
from imtrans.core.contracts import size_multiple
from imtrans.core.distributed import Distributed
from imtrans.core.observer import TrainingObserver
from imtrans.data.batches import TrainingData, training_data
from imtrans.errors import DataError, RecipeError
from imtrans.recipe.schema import Recipe
from imtrans.runs.checkpoints.initial import load_initial_weights
from imtrans.trainers.base import Trainer, attach
from imtrans.trainers.ema import GeneratorEMA
from imtrans.training import checkpointing as training_checkpoint
from imtrans.training.feasibility import check_feasible
from imtrans.training.schedules import LRSchedule
from imtrans.training.speed import apply_speed
from imtrans.training.state import Plan
from imtrans.training.step import TrainingStep

__all__ = ["Plan", "Training", "build_training", "check_image_size"]


@dataclass
class Training:
    """Everything a run trains with, built and wired.

    Attributes:
        recipe: The validated recipe (with data, ``train.log_every`` as the number the run
            uses: ``auto`` resolved for its length).
        device: The training device.
        trainer: The trainer, set up (networks attached, optimisers created).
        networks: The trainer's networks by role, unwrapped (no DDP wrapper).
        schedule: The learning-rate schedule over the trainer's optimisers.
        data: The dataset and its batches (None when built with ``data=False``).
        plan: Steps per epoch and in total (None without data).
        sample_batch: The fixed batch of the sample grids (None without data).
        step: One training step on a batch (what the loop and the benchmark call).
        ema: The moving average of the translating generators (``train.ema``; None: off).
    """

    recipe: Recipe
    device: torch.device
    trainer: Trainer
    networks: dict[str, nn.Module]
    schedule: LRSchedule
    data: TrainingData | None = None
    plan: Plan | None = None
    sample_batch: dict[str, Tensor] | None = None
    step: TrainingStep | None = None
    ema: GeneratorEMA | None = None

    def restore(self, checkpoint: Path, notes: list[str] | None = None,
                changes: dict[str, list[Any]] | None = None) -> int:
        """Load ``checkpoint`` into the trainer and schedule; return the step to go on from;
        warnings about a continuation that differs from the saved run go to ``notes``, the
        task settings that differ to ``changes``.

        Raises:
            CheckpointError: unreadable, made with other networks, or by another number of
                processes at another global batch (see
                :func:`imtrans.training.checkpointing.restore`).
        """
        return training_checkpoint.restore(checkpoint, self.trainer, self.schedule,
                                           self.recipe, self.device, notes=notes,
                                           changes=changes, ema=self.ema,
                                           processes=self.plan.processes if self.plan else 1)


def build_training(recipe: Recipe, registry: Components | None = None, *,
                   device: torch.device, data: bool = True, speed: bool = True,
                   ddp: Distributed | None = None, observer: TrainingObserver | None = None,
                   initialise: bool = True, check: bool = True) -> Training:
    """Build the run ``recipe`` describes on ``device``.

    Seed first (:func:`~imtrans.core.device.seed_everything`) for a reproducible run: the
    networks draw their initial weights here.

    Args:
        recipe: A validated recipe.
        registry: The components (default: built-ins and installed plugins).
        device: Where to build (``meta``: layouts and parameter counts, no memory).
        data: Build the dataset and its batches (``imtrans bench --synthetic`` and layout
            checks do without).
        speed: Apply the ``[speed]`` switches (bf16, channels_last, compile, fused Adam).
        ddp: This process's place among several (default: one process).
        observer: Receives notices such as the bundled-sample fallback.
        initialise: Load the recipe's ``[init]`` weights, if it names any (a resumed run
            does not: its checkpoint holds the weights).
        check: Refuse, before any data is read or memory taken, a recipe that cannot run on
            ``run.device`` (:func:`~imtrans.training.feasibility.check_feasible`); never on
            the meta device, where nothing is allocated.

    Raises:
        RecipeError: the recipe cannot run on this machine (its device, sizes, memory).
        ImtransError: bad data, a recipe the components refuse, a switch the device lacks.
        DataError: the images' size does not suit the generators.
    """
    registry = registry or components()
    observer = observer or TrainingObserver()
    rank, world_size = (ddp.rank, ddp.world_size) if ddp is not None else (0, 1)
    trainer = build_trainer(recipe, registry)  # the one trainer of the run
    if check and device.type != "meta":
        check_feasible(recipe, registry, trainer)
    batches = (training_data(recipe, registry, observer, device, rank=rank,
                             world_size=world_size) if data else None)
    networks = build_networks(recipe, registry, trainer, device)
    if initialise and recipe.init.source is not None:
        observer.message(load_initial_weights(recipe.init, networks).describe())
    losses = {k: v.to(device) for k, v in build_losses(recipe, registry, trainer).items()}
    fused = speed and recipe.speed.fused_adam
    if speed:
        apply_speed(networks, recipe.speed, device)  # in place: names and checkpoints unchanged
    attached = ddp.wrap(networks) if ddp is not None else networks
    with torch.device(device):  # loss terms with parameters build them on the device
        attach(trainer, attached, loss_terms(recipe, losses),
               optimizer_factory(recipe.optim, fused=fused))
    schedule = LRSchedule(recipe.schedule, list(trainer.optimizers().values()))
    # After apply_speed (the average takes the networks' memory format) and [init] (it starts
    # from the weights training starts from).
    ema = (GeneratorEMA.of_translators(trainer.translators, networks, recipe.train.ema)
           if recipe.train.ema is not None else None)
    training = Training(recipe, device, trainer, networks, schedule,
                        step=_training_step(recipe, trainer, ema, device, speed, world_size),
                        ema=ema)
    if batches is not None:
        training.data, training.plan = batches, Plan.of(recipe, len(batches.dataset), world_size)
        # train.log_every "auto" becomes the run's number here, once its length is known.
        training.recipe = recipe.with_log_interval(training.plan.total_steps)
        training.sample_batch = batches.fixed_batch(recipe.train.sample_count, recipe.run.seed,
                                                    device)
        check_image_size(networks, training.sample_batch, recipe)  # before anything is written
    return training


def _training_step(recipe: Recipe, trainer: Trainer, ema: GeneratorEMA | None,
                   device: torch.device, speed: bool, world_size: int) -> TrainingStep:
    """The step the loop calls: compiled whole with ``speed.compile = "step"``.

    Raises:
        RecipeError: a whole-step compile across several processes (DDP's gradient hooks
            run inside the backward, which the one graph would have to capture too).
    """
    mode = None
    if speed and recipe.speed.compile == "step":
        if world_size > 1:
            raise RecipeError(
                f'speed.compile = "step" runs in one process; this run has {world_size}: use '
                'speed.compile = "networks" with several GPUs')
        mode = "reduce-overhead" if recipe.speed.cuda_graphs else "default"
    return TrainingStep(trainer, ema, compile_mode=mode, device=device)


def check_image_size(networks: dict[str, nn.Module], batch: dict[str, Tensor],
                     recipe: Recipe) -> None:
    """Refuse images the generators cannot take (a U-Net halves the size ``num_downs`` times).

    Raises:
        DataError: naming the size the data gives, the multiple needed and what to change.
    """
    height, width = batch["A"].shape[-2:]
    for role, network in networks.items():
        multiple = size_multiple(network)
        if height % multiple or width % multiple:
            raise DataError(
                f"{role} ({recipe.generator.name}) takes images whose sides are multiples of "
                f"{multiple}, but [data] gives {width}x{height}: set data.crop_size (and "
                "data.load_size) to a multiple of it, or choose a generator for this size "
                "(e.g. generator.name=unet with num_downs = log2 of the size)")
