"""The trainer contract: the networks a method trains, its loss slots, and one training step.

A trainer class is registered under a name (``cyclegan``, ``pix2pix``) and built from the
``[trainer]`` table of a recipe; its keyword-only constructor parameters are the method's
hyperparameters. A method writes three things:

- :meth:`Trainer.networks`: the networks it trains, by attribute name, given the channel
  counts of the two domains;
- :meth:`Trainer.setup`: what it builds from them (optimisers through :meth:`optimizer`,
  image pools through :meth:`image_pool`, loss terms that own parameters through
  :meth:`trainable_terms`);
- :meth:`Trainer.training_step`: one line per network group, each an
  :func:`~imtrans.trainers.updates.update`.

:meth:`Trainer.sample_images` and :meth:`Trainer.recipe_defaults` have defaults a method may
replace. The base class does the rest: the engine calls :func:`attach` with the built networks,
loss terms and optimiser factory; networks become attributes (``self.gen_ab``); and
:meth:`modules`, :meth:`optimizers` and the checkpoint state follow from what setup registered.
The engine's side of the contract is a handful of functions here (:func:`attach`,
:func:`set_train_mode`, :func:`image_pools`, :func:`trainer_state_tensors`,
:func:`load_trainer_state_tensors`, :func:`loss_slots`), not members a method author sees.
Adversarial methods derive from :class:`~imtrans.trainers.adversarial.AdversarialTrainer`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from imtrans.errors import InvalidArgumentError
from imtrans.trainers.image_pool import ImagePool
from imtrans.trainers.loss_terms import LossTerms
from imtrans.trainers.optim import OptimizerFactory
from imtrans.trainers.trainable_terms import TrainableTerms

__all__ = ["ADVERSARIAL_SLOT", "DomainChannels", "NetworkSpec", "Trainer", "attach",
           "image_pools", "load_trainer_state_tensors", "loss_slots", "set_train_mode",
           "trainer_state_tensors"]

#: The loss slot that takes the adversarial loss (an ``AdversarialLoss``): every trainer has it,
#: and a recipe fills it with exactly one term.
ADVERSARIAL_SLOT = "adversarial"


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

    A subclass implements :meth:`networks` and :meth:`training_step`, usually :meth:`setup`
    (its optimisers), and where it has them sets :attr:`pair_slots`, :attr:`feature_slots`
    and :attr:`translators` and replaces :meth:`recipe_defaults` and :meth:`sample_images`.
    """

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

    #: Set by :func:`attach` before :meth:`setup`: the recipe's loss terms by slot.
    terms: LossTerms
    # Set by attach: what setup registers, read by modules(), optimizers() and the engine.
    _networks: dict[str, nn.Module]
    _optimizer_factory: OptimizerFactory
    _optimizers: dict[str, torch.optim.Optimizer]
    _pools: dict[str, ImagePool]
    _trainable: TrainableTerms

    @classmethod
    def recipe_defaults(cls) -> dict[str, Any]:
        """Recipe tables this method brings (generator, discriminator, loss terms, dataset).

        A recipe states only what differs: its tables are merged over these, key by key. The
        default brings none: the recipe states every table.
        """
        return {}

    def networks(self, channels: DomainChannels) -> dict[str, NetworkSpec]:
        """The networks this method trains, by attribute name (``gen_ab``, ``disc_b``...).

        Raises:
            InvalidArgumentError: the method cannot work with these channel counts.
        """
        raise NotImplementedError

    def setup(self) -> None:
        """Build what the step needs from the attached networks and terms (optimisers, pools).

        The networks are attributes by now (``self.gen``). The default builds nothing.
        """

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Update every network once on ``batch``; return the loss terms, detached, on device.

        Each group of networks (the discriminators, the generators) is one
        :func:`~imtrans.trainers.updates.update`. Must not synchronise with the host (no
        ``.item()``): the loop reads the values only every few steps.
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

        The default shows each of :attr:`translators` at work (``real A``, ``fake B``, then
        ``real B``, ``fake A`` for a ``BtoA`` one); a trainer without translators shows its
        batch (``real A``, ``real B``).
        """
        columns: dict[str, Tensor] = {}
        for direction, role in self.translators.items():
            source, target = ("A", "B") if direction == "AtoB" else ("B", "A")
            columns[f"real {source}"] = batch[source]
            columns[f"fake {target}"] = self._networks[role](batch[source])
        return columns or {"real A": batch["A"], "real B": batch["B"]}

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
        """Give the loss terms that own parameters (a PatchNCE head) one optimiser each.

        Returns them as one :class:`TrainableTerms`: pass it to the generator's
        :func:`~imtrans.trainers.updates.update` beside its optimiser, which clears, backwards
        into and steps them with it. Checkpoints hold them (see :meth:`modules`).
        """
        self._trainable = TrainableTerms(terms, self._optimizer_factory)
        return self._trainable

    # What the engine, checkpoints and tests read.

    def modules(self) -> dict[str, nn.Module]:
        """Every network by name, and loss terms with parameters as ``loss_<key>`` (what
        checkpoints save)."""
        return self._networks | self._trainable.modules()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser by name (what checkpoints save and schedules adjust)."""
        return self._optimizers | self._trainable.optimizers()

    if not TYPE_CHECKING:  # the type checker should not take every missing name for these
        def __getattr__(self, name: str) -> Any:
            """The names that moved out of the class keep working, with a warning."""
            moved = _MOVED.get(name)
            if moved is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            get, instead = moved
            warnings.warn(f"Trainer.{name} is deprecated; {instead}", DeprecationWarning,
                          stacklevel=2)
            return get(self)


# The engine's side of the contract: what builds, runs and checkpoints a trainer.

def attach(trainer: Trainer, networks: Mapping[str, nn.Module], terms: LossTerms,
           optimizers: OptimizerFactory) -> None:
    """Give ``trainer`` its built networks and loss terms, then run its
    :meth:`~Trainer.setup` (once, by the engine).

    Args:
        trainer: A trainer as its class built it from the recipe's ``[trainer]`` table.
        networks: Built networks by the names :meth:`Trainer.networks` gave; each becomes an
            attribute of the trainer.
        terms: The recipe's loss terms with the slots they fill.
        optimizers: Creates optimisers with the run's settings.
    """
    trainer._networks = dict(networks)
    for role, network in trainer._networks.items():
        setattr(trainer, role, network)
    trainer.terms = terms
    trainer._optimizer_factory = optimizers
    trainer._optimizers = {}
    trainer._pools = {}
    trainer._trainable = TrainableTerms((), optimizers)
    trainer.setup()


def set_train_mode(trainer: Trainer, mode: bool = True) -> None:
    """Put every network of ``trainer`` (and its loss terms with parameters) in training (or
    evaluation) mode."""
    for module in trainer.modules().values():
        module.train(mode)


def image_pools(trainer: Trainer) -> dict[str, ImagePool]:
    """Every image pool of ``trainer`` by checkpoint name (a compiled step plans them
    beforehand)."""
    return dict(trainer._pools)


def trainer_state_tensors(trainer: Trainer) -> dict[str, Tensor]:
    """The state a checkpoint holds beside networks and optimisers: the image pools."""
    tensors: dict[str, Tensor] = {}
    for name, pool in trainer._pools.items():
        tensors |= pool.state_tensors(name)
    return tensors


def load_trainer_state_tensors(trainer: Trainer, tensors: dict[str, Tensor],
                               device: torch.device) -> None:
    """Restore what :func:`trainer_state_tensors` returned."""
    for name, pool in trainer._pools.items():
        pool.load_state_tensors(name, tensors, device)


def loss_slots(trainer_cls: type[Trainer]) -> dict[str, str]:
    """Every loss slot of a trainer class, the adversarial one first, with a one-line
    description."""
    adversarial = {ADVERSARIAL_SLOT: "the generators' and discriminators' GAN loss"}
    return adversarial | dict(trainer_cls.pair_slots) | dict(trainer_cls.feature_slots)


#: The members that left :class:`Trainer`, by old name: how to read each, and what to use now.
_MOVED: dict[str, tuple[Callable[[Trainer], Any], str]] = {
    "trainable": (lambda trainer: trainer._trainable,
                  "keep what trainable_terms() returns and pass it to update()"),
    "adversarial_slot": (lambda trainer: ADVERSARIAL_SLOT,
                         "use imtrans.trainers.base.ADVERSARIAL_SLOT"),
    "attach": (lambda trainer: partial(attach, trainer),
               "use imtrans.trainers.base.attach(trainer, ...)"),
    "train": (lambda trainer: partial(set_train_mode, trainer),
              "use imtrans.trainers.base.set_train_mode(trainer)"),
    "pools": (lambda trainer: partial(image_pools, trainer),
              "use imtrans.trainers.base.image_pools(trainer)"),
    "state_tensors": (lambda trainer: partial(trainer_state_tensors, trainer),
                      "use imtrans.trainers.base.trainer_state_tensors(trainer)"),
    "load_state_tensors": (lambda trainer: partial(load_trainer_state_tensors, trainer),
                           "use imtrans.trainers.base.load_trainer_state_tensors(trainer, ...)"),
}
