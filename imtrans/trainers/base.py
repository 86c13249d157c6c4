"""The trainer contract: the networks a method builds, its loss slots, and one training step.

A trainer class is registered under a name (``cyclegan``, ``pix2pix``) and built from the
``[trainer]`` table of a recipe; its keyword-only constructor parameters are the method's
hyperparameters. Class methods describe the method to the recipe layer before anything is built
(the recipe defaults it brings, the networks it needs, the slots its loss terms fill);
:meth:`Trainer.setup` then hands it the built networks and losses, and the fit loop calls
:meth:`Trainer.training_step` once per batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from imtrans.errors import InvalidArgumentError

if TYPE_CHECKING:
    from imtrans.losses import AdversarialLoss
    from imtrans.recipe import OptimTable, Recipe

__all__ = [
    "NetworkSpec",
    "Trainer",
    "discriminator_loss",
    "make_adam",
    "set_requires_grad",
    "terms_by_slot",
]


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
    """Base class of trainers.

    Subclasses set :attr:`adversarial_slot`, :attr:`pair_slots` and :attr:`feature_slots`,
    implement :meth:`recipe_defaults`, :meth:`networks`, :meth:`setup`,
    :meth:`training_step` and :meth:`sample_images`, and keep their networks and optimisers
    in named attributes.
    """

    #: The loss term slot that takes an adversarial loss (an ``AdversarialLoss``).
    adversarial_slot: ClassVar[str] = "adversarial"
    #: Loss slots that compare two images (output, target), with what each compares. A recipe's
    #: ``[losses.NAME]`` term fills the slot NAME, or the slot given by its ``on`` key, so extra
    #: terms (a plugin loss, say) can be added to a slot beside the default one.
    pair_slots: ClassVar[dict[str, str]] = {}
    #: Loss slots that take feature losses (:class:`imtrans.losses.GeneratorFeatureLoss`):
    #: terms computed from a generator, its input and its output, which may own parameters
    #: (bind them and give them optimisers with :class:`imtrans.trainers.TrainableTerms`).
    feature_slots: ClassVar[dict[str, str]] = {}
    #: The generators that translate, by direction: ``AtoB`` (the recipe's inputs to its
    #: targets) and, for methods that learn the inverse too, ``BtoA``. Inference, evaluation and
    #: export find a trained translator through this.
    translators: ClassVar[dict[str, str]] = {}
    #: Whether :meth:`setup` creates fused Adam optimisers (``speed.fused_adam``; set by
    #: :func:`imtrans.engine.speed.apply_speed`); pass it to :func:`make_adam`.
    fused_adam: bool = False

    @classmethod
    def recipe_defaults(cls) -> dict[str, Any]:
        """Recipe tables this method brings (generator, discriminator, loss terms, dataset).

        A recipe states only what differs: its tables are merged over these, key by key.
        """
        raise NotImplementedError

    @classmethod
    def networks(cls, recipe: Recipe) -> dict[str, NetworkSpec]:
        """The networks this method trains, by attribute name (``gen_ab``, ``disc_b``...)."""
        raise NotImplementedError

    @classmethod
    def slots(cls) -> dict[str, str]:
        """Every loss slot, adversarial included, with a one-line description."""
        adversarial = {cls.adversarial_slot: "the generators' and discriminators' GAN loss"}
        return adversarial | dict(cls.pair_slots) | dict(cls.feature_slots)

    def setup(self, networks: dict[str, nn.Module], losses: dict[str, nn.Module],
              slots: dict[str, str], optim: OptimTable) -> None:
        """Take the built networks and loss terms and create the optimisers.

        Args:
            networks: Built networks by the names :meth:`networks` gave.
            losses: Built loss terms by recipe key.
            slots: The slot each loss term fills, by recipe key.
            optim: The recipe's Adam settings.
        """
        raise NotImplementedError

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Update every network once on ``batch``; return the loss terms, detached, on device.

        Must not synchronise with the host (no ``.item()``): the loop reads the values only
        every few steps.
        """
        raise NotImplementedError

    @torch.no_grad()
    def sample_images(self, batch: dict[str, Tensor]) -> list[Tensor]:
        """Columns of a sample grid for ``batch``: input, output, and more when meaningful."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """Every network by name (what checkpoints save)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser by name (what checkpoints save and schedules adjust)."""
        raise NotImplementedError

    def state_tensors(self) -> dict[str, Tensor]:
        """Extra state a checkpoint must hold (an image pool, say); none by default."""
        return {}

    def load_state_tensors(self, tensors: dict[str, Tensor], device: torch.device) -> None:
        """Restore what :meth:`state_tensors` returned."""

    def train(self, mode: bool = True) -> None:
        """Put every network in training (or evaluation) mode."""
        for module in self.modules().values():
            module.train(mode)


def make_adam(modules: Iterable[nn.Module], optim: OptimTable, *,
              fused: bool = False) -> torch.optim.Adam:
    """One Adam over all ``modules``' parameters (the papers share one per role).

    Args:
        modules: The networks it updates.
        optim: The recipe's Adam settings.
        fused: Use the fused kernel (one launch per step instead of several per tensor);
            :func:`imtrans.engine.speed.check_speed` has checked that the device has it.
    """
    params = [p for m in modules for p in m.parameters()]
    return torch.optim.Adam(params, lr=optim.lr, betas=optim.betas,
                            weight_decay=optim.weight_decay, fused=fused or None)


def set_requires_grad(modules: Iterable[nn.Module], flag: bool) -> None:
    """Freeze or unfreeze ``modules`` (the discriminators while the generators step)."""
    for module in modules:
        for param in module.parameters():
            param.requires_grad_(flag)


def discriminator_loss(adversarial: AdversarialLoss, disc: nn.Module, real: Tensor,
                       fake: Tensor, scale: float) -> Tensor:
    """``scale`` x the adversarial loss of ``disc`` on ``real`` and ``fake``, plus its penalty."""
    fake = fake.detach()
    loss = scale * adversarial.discriminator_loss(disc(real), disc(fake))
    penalty = adversarial.penalty(disc, real, fake)
    return loss if penalty is None else loss + penalty


def terms_by_slot(losses: dict[str, nn.Module], slots: dict[str, str]
                  ) -> dict[str, list[tuple[str, nn.Module]]]:
    """Group loss terms by the slot they fill, leaving out terms of weight 0."""
    grouped: dict[str, list[tuple[str, nn.Module]]] = {}
    for key, loss in losses.items():
        if getattr(loss, "weight", 1.0) == 0:
            continue
        grouped.setdefault(slots[key], []).append((key, loss))
    return grouped


def check_positive_settings(pool_size: int, d_loss_scale: float) -> None:
    """Validate the settings the adversarial trainers share."""
    if pool_size < 0:
        raise InvalidArgumentError(f"pool_size must be >= 0, got {pool_size}")
    if d_loss_scale <= 0:
        raise InvalidArgumentError(f"d_loss_scale must be > 0, got {d_loss_scale}")
