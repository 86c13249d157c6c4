"""What the GAN trainers share: the adversarial term, the discriminator update, the freezing of
discriminators, and the settings they all check.

pix2pix, CycleGAN and a plugin's CUT derive from :class:`AdversarialTrainer`: after
:func:`~imtrans.trainers.base.attach`, ``self.adversarial`` is the recipe's adversarial loss
and ``self.generator_adversarial`` says whether the generators' adversarial term is on (weight
not 0); setup starts from there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from imtrans.errors import InvalidArgumentError
from imtrans.trainers.base import ADVERSARIAL_SLOT, Trainer
from imtrans.trainers.trainable_terms import bind_feature_terms

if TYPE_CHECKING:
    from imtrans.losses.adversarial import AdversarialLoss
    from imtrans.losses.feature import GeneratorFeatureLoss

__all__ = ["AdversarialTrainer", "check_adversarial_settings", "discriminator_loss",
           "set_requires_grad"]


class AdversarialTrainer(Trainer):
    """A trainer with generators and discriminators and one adversarial loss term.

    Attributes:
        adversarial: The recipe's adversarial loss (slot ``adversarial``).
        generator_adversarial: Whether the generators' adversarial term counts (its weight is
            not 0); the discriminators train either way.
    """

    adversarial: AdversarialLoss
    generator_adversarial: bool

    def setup(self) -> None:
        """Subclasses call ``super().setup()`` first, then build their part."""
        self.adversarial = self.terms.only(ADVERSARIAL_SLOT)
        self.generator_adversarial = bool(self.terms.in_slot(ADVERSARIAL_SLOT))

    def feature_terms_of(self, slot: str, generator: nn.Module, *, suffix: str = ""
                      ) -> list[tuple[str, GeneratorFeatureLoss]]:
        """The terms of feature ``slot`` bound to ``generator`` (copies, with a ``suffix``:
        see :func:`~imtrans.trainers.bind_feature_terms`)."""
        return bind_feature_terms(self.terms.in_slot(slot), generator, suffix=suffix)


def set_requires_grad(modules: Iterable[nn.Module], flag: bool) -> None:
    """Freeze or unfreeze ``modules`` (the discriminators while the generators step).

    :func:`~imtrans.trainers.updates.update` freezes what its ``frozen`` names for the
    update and restores it after, so a trainer written with it needs no call of this.
    Inside a compiled step this does nothing: there the backward goes into the stepping
    optimisers' parameters only (see :func:`imtrans.trainers.updates.backward`), which
    leaves the discriminators' gradients alone just as freezing them does.
    """
    if torch.compiler.is_compiling():
        return
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


def check_adversarial_settings(*, pool_size: int = 0, d_loss_scale: float = 0.5) -> None:
    """Validate the settings the adversarial trainers share.

    Raises:
        InvalidArgumentError: a negative ``pool_size`` or a ``d_loss_scale`` not above 0.
    """
    if pool_size < 0:
        raise InvalidArgumentError(f"pool_size must be >= 0, got {pool_size}")
    if d_loss_scale <= 0:
        raise InvalidArgumentError(f"d_loss_scale must be > 0, got {d_loss_scale}")

