"""The trainer contract: which networks a method builds and which loss terms it knows.

A trainer class is registered under a name (``cyclegan``, ``pix2pix``) and built from the
``[trainer]`` table of a recipe; its keyword-only constructor parameters are the method's
hyperparameters. Class methods describe the method to the recipe layer before anything is built:
the recipe defaults it brings, the networks it needs, and the slots its loss terms fill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from imtrans.recipe import Recipe

__all__ = ["NetworkSpec", "Trainer"]


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

    Subclasses set :attr:`adversarial_slot` and :attr:`pair_slots`, and implement
    :meth:`recipe_defaults` and :meth:`networks`.
    """

    #: The loss term slot that takes an adversarial loss (an ``AdversarialLoss``).
    adversarial_slot: ClassVar[str] = "adversarial"
    #: Loss slots that compare two images (output, target), with what each compares. A recipe's
    #: ``[losses.NAME]`` term fills the slot NAME, or the slot given by its ``on`` key, so extra
    #: terms (a plugin loss, say) can be added to a slot beside the default one.
    pair_slots: ClassVar[dict[str, str]] = {}

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
        return adversarial | dict(cls.pair_slots)
