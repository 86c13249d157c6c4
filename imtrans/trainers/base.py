"""The trainer contract: the networks a method trains, its loss slots, and one training step.

A trainer class is registered under a name (``cyclegan``, ``pix2pix``) and built from the
``[trainer]`` table of a recipe; its keyword-only constructor parameters are the method's
hyperparameters. A method writes three things:

- :meth:`Trainer.networks`: the networks it trains, by attribute name, given the channel
  counts of the two domains;
- :meth:`Trainer.setup`: what it builds from them (optimisers through :meth:`optimizer`,
  image pools through :meth:`image_pool`, loss terms that own parameters through
  :meth:`trainable_terms`);
- :meth:`Trainer.training_step` (and :meth:`Trainer.sample_images` for the sample grids).

The base class does the rest: the engine calls :meth:`Trainer.attach` with the built networks,
loss terms and optimiser factory; networks become attributes (``self.gen_ab``); and
:meth:`modules`, :meth:`optimizers` and the checkpoint state follow from what setup registered.
Adversarial methods derive from :class:`~imtrans.trainers.adversarial.AdversarialTrainer`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from imtrans.errors import InvalidArgumentError
from imtrans.trainers.image_pool import ImagePool
from imtrans.trainers.loss_terms import LossTerms
from imtrans.trainers.optim import OptimizerFactory
from imtrans.trainers.trainable_terms import TrainableTerms

__all__ = ["DomainChannels", "NetworkSpec", "Trainer"]


@dataclass(frozen=True)
class DomainChannels:
    """Channel counts of the two domains: the inputs (A) and the targets (B)."""

    a: int = 3
    b: int = 3


@dataclass(frozen=True)
class NetworkSpec:
    """One network a trainer needs.

    Attributes:
        kind: The registry that builds it ("generators" or "discriminators").
        section: The recipe table its component name and arguments come from.
        overrides: Arguments the trainer sets itself (channel counts follow the data); a recipe
            that sets one of these in ``section`` is refused, so the two can never disagree.
    """

    kind: str
    section: str
    overrides: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Base class of trainers (see the module doc for what a subclass writes).

    Subclasses set :attr:`pair_slots`, :attr:`feature_slots` and :attr:`translators`, and
    implement :meth:`recipe_defaults`, :meth:`networks`, :meth:`setup`,
    :meth:`training_step` and :meth:`sample_images`.
    """

    #: The loss term slot that takes an adversarial loss (an ``AdversarialLoss``).
    adversarial_slot: ClassVar[str] = "adversarial"
    #: Loss slots that compare two images (output, target), with what each compares. A recipe's
    #: ``[losses.NAME]`` term fills the slot NAME, or the slot given by its ``on`` key, so extra
    #: terms (a plugin loss, say) can be added to a slot beside the default one.
    pair_slots: ClassVar[dict[str, str]] = {}
    #: Loss slots that take feature losses (:class:`imtrans.losses.GeneratorFeatureLoss`):
    #: terms computed from a generator, its input and its output, which may own parameters
    #: (give them optimisers with :meth:`trainable_terms`).
    feature_slots: ClassVar[dict[str, str]] = {}
    #: Pair slots that compare a domain's image with a generator's output for the other
    #: domain (CycleGAN's identity): they need equal channel counts in A and B.
    same_channel_slots: ClassVar[tuple[str, ...]] = ()
    #: The generators that translate, by direction: ``AtoB`` (the recipe's inputs to its
    #: targets) and, for methods that learn the inverse too, ``BtoA``. Inference, evaluation and
    #: export find a trained translator through this.
    translators: ClassVar[dict[str, str]] = {}

    #: Set by :meth:`attach`: the loss terms by slot.
    terms: LossTerms
    #: Set by :meth:`attach`; replaced by :meth:`trainable_terms`.
    trainable: TrainableTerms

    @classmethod
    def recipe_defaults(cls) -> dict[str, Any]:
        """Recipe tables this method brings (generator, discriminator, loss terms, dataset).

        A recipe states only what differs: its tables are merged over these, key by key.
        """
        raise NotImplementedError

    @classmethod
    def slots(cls) -> dict[str, str]:
        """Every loss slot, adversarial included, with a one-line description."""
        adversarial = {cls.adversarial_slot: "the generators' and discriminators' GAN loss"}
        return adversarial | dict(cls.pair_slots) | dict(cls.feature_slots)

    def networks(self, channels: DomainChannels) -> dict[str, NetworkSpec]:
        """The networks this method trains, by attribute name (``gen_ab``, ``disc_b``...).

        Raises:
            InvalidArgumentError: the method cannot work with these channel counts.
        """
        raise NotImplementedError

    def attach(self, networks: Mapping[str, nn.Module], terms: LossTerms,
               optimizers: OptimizerFactory) -> None:
        """Take the built networks and loss terms, then run :meth:`setup` (called once, by the
        engine).

        Args:
            networks: Built networks by the names :meth:`networks` gave; each becomes an
                attribute of the trainer.
            terms: The recipe's loss terms with the slots they fill.
            optimizers: Creates optimisers with the run's settings.
        """
        self._networks = dict(networks)
        for role, network in self._networks.items():
            setattr(self, role, network)
        self.terms = terms
        self._optimizer_factory = optimizers
        self._optimizers: dict[str, torch.optim.Optimizer] = {}
        self._pools: dict[str, ImagePool] = {}
        self.trainable = TrainableTerms((), optimizers)
        self.setup()

    def setup(self) -> None:
        """Build what the step needs from the attached networks and terms (optimisers, pools)."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Update every network once on ``batch``; return the loss terms, detached, on device.

        Must not synchronise with the host (no ``.item()``): the loop reads the values only
        every few steps.
        """
        raise NotImplementedError

    def prepare_step(self) -> None:
        """Make the step's host-side random choices before a compiled step runs (a whole-step
        compile, ``speed.compile = "step"``, cannot draw them inside its graph).

        The default does nothing; the image pools are planned by the engine. A trainer whose
        step branches on a host draw (CUT's random flip) draws it here and, while compiling
        (``torch.compiler.is_compiling()``), reads what was drawn instead of drawing.
        """

    @torch.no_grad()
    def sample_images(self, batch: dict[str, Tensor]) -> dict[str, Tensor] | list[Tensor]:
        """Columns of a sample grid for ``batch``, by label, in the order shown.

        Each column is an N x C x H x W tensor in [-1, 1], one image per row of the grid, for
        example ``{"real A": a, "fake B": G(a), "real B": b}``; the labels head the columns in
        the report. A plain list of columns still works: its columns are labelled ``input``,
        ``output``, ``column 3``... The engine calls this in training mode with the RNG and
        batch-norm buffers restored afterwards, so extra generator passes here (the other
        direction, identity mappings) do not change training.
        """
        raise NotImplementedError

    # What setup calls to register what it builds.

    def optimizer(self, name: str, modules: Iterable[nn.Module], *, lr: float | None = None
                  ) -> torch.optim.Optimizer:
        """Create the optimiser ``name`` (its checkpoint name) over ``modules``.

        Args:
            name: Unique among this trainer's optimisers (``gen``, ``disc``).
            modules: What it updates.
            lr: An initial rate of its own (default: the recipe's ``optim.lr``); the schedule
                scales each optimiser from its own initial rate.
        """
        if name in self._optimizers:
            raise InvalidArgumentError(f"optimizer {name!r} is created twice")
        optimizer = self._optimizer_factory(modules, lr=lr)
        self._optimizers[name] = optimizer
        return optimizer

    def image_pool(self, name: str, size: int) -> ImagePool:
        """A history of generated images (saved in checkpoints under ``name``)."""
        pool = ImagePool(size)
        self._pools[name] = pool
        return pool

    def trainable_terms(self, terms: Iterable[tuple[str, nn.Module]]) -> TrainableTerms:
        """Give the loss terms that own parameters (a PatchNCE head) one optimiser each; step
        them with the generator's (see :class:`TrainableTerms`)."""
        self.trainable = TrainableTerms(terms, self._optimizer_factory)
        return self.trainable

    # What the engine reads.

    def modules(self) -> dict[str, nn.Module]:
        """Every network by name, and loss terms with parameters (what checkpoints save)."""
        return self._networks | self.trainable.modules()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser by name (what checkpoints save and schedules adjust)."""
        return self._optimizers | self.trainable.optimizers()

    def pools(self) -> dict[str, ImagePool]:
        """Every image pool by checkpoint name (a compiled step plans them beforehand)."""
        return dict(self._pools)

    def state_tensors(self) -> dict[str, Tensor]:
        """Extra state a checkpoint must hold: the image pools."""
        tensors: dict[str, Tensor] = {}
        for name, pool in self._pools.items():
            tensors |= pool.state_tensors(name)
        return tensors

    def load_state_tensors(self, tensors: dict[str, Tensor], device: torch.device) -> None:
        """Restore what :meth:`state_tensors` returned."""
        for name, pool in self._pools.items():
            pool.load_state_tensors(name, tensors, device)

    def train(self, mode: bool = True) -> None:
        """Put every network in training (or evaluation) mode."""
        for module in self.modules().values():
            module.train(mode)
