"""CycleGAN (Zhu et al., 2017): unpaired translation with two generators and cycle consistency."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from imtrans.losses.reconstruction import check_weight
from imtrans.trainers.adversarial import (
    AdversarialTrainer,
    check_adversarial_settings,
    discriminator_loss,
)
from imtrans.trainers.base import DomainChannels, NetworkSpec
from imtrans.trainers.updates import update

__all__ = ["CycleGANTrainer"]


class CycleGANTrainer(AdversarialTrainer):
    """CycleGAN: two generators and two discriminators, cycle and identity losses.

    Defaults are the paper's: resnet_9blocks generators and 70x70 PatchGAN discriminators
    with instance norm, LSGAN, cycle weight 10 in both directions, identity weight
    0.5 * 10 = 5, a 50-image history of generated images for the discriminators, and the
    discriminator loss halved.

    ``weight_a`` and ``weight_b`` weigh the two directions apart, as the official code's
    ``lambda_A`` and ``lambda_B`` do. ``weight_a`` multiplies the cycle and identity terms that
    compare with a domain A image (``G_BA(G_AB(a))`` vs ``a``; ``G_BA(a)`` vs ``a``), and
    ``weight_b`` those that compare with a domain B image (``G_AB(G_BA(b))`` vs ``b``;
    ``G_AB(b)`` vs ``b``). The official ``lambda_A=10, lambda_B=5, lambda_identity=0.5`` is
    ``losses.cycle.weight = 10``, ``losses.identity.weight = 5`` and ``weight_b = 0.5``.

    Args:
        pool_size: Generated images kept to update the discriminators with (0: no history).
        d_loss_scale: Factor on the discriminator loss (0.5 in the paper, slowing D).
        weight_a: Factor on the cycle and identity terms against domain A images.
        weight_b: Factor on the cycle and identity terms against domain B images.

    Raises:
        InvalidArgumentError: a negative ``pool_size``, a ``d_loss_scale`` not above 0, or a
            direction weight that is negative or not a finite number.
    """

    pair_slots: ClassVar[dict[str, str]] = {
        "cycle": "G_BA(G_AB(a)) vs a and G_AB(G_BA(b)) vs b",
        "identity": "G_AB(b) vs b and G_BA(a) vs a (needs equal channel counts)",
    }

    same_channel_slots: ClassVar[tuple[str, ...]] = ("identity",)

    feature_slots: ClassVar[dict[str, str]] = {
        "features": "G_AB(a) vs a and G_BA(b) vs b inside each generator (e.g. patchnce); "
                    "each generator gets its own copy of the term",
    }

    translators: ClassVar[dict[str, str]] = {"AtoB": "gen_ab", "BtoA": "gen_ba"}

    gen_ab: nn.Module
    gen_ba: nn.Module
    disc_a: nn.Module
    disc_b: nn.Module

    def __init__(self, *, pool_size: int = 50, d_loss_scale: float = 0.5,
                 weight_a: float = 1.0, weight_b: float = 1.0) -> None:
        check_adversarial_settings(pool_size=pool_size, d_loss_scale=d_loss_scale)
        self.pool_size = pool_size
        self.d_loss_scale = d_loss_scale
        self.weight_a = check_weight("weight_a", weight_a)
        self.weight_b = check_weight("weight_b", weight_b)

    @classmethod
    def recipe_defaults(cls) -> dict[str, Any]:
        return {
            "data": {"name": "unaligned"},
            "generator": {"name": "resnet_9blocks", "norm": "instance", "dropout": False},
            "discriminator": {"name": "patchgan", "n_layers": 3, "norm": "instance"},
            "losses": {
                "adversarial": {"name": "lsgan"},
                "cycle": {"name": "cycle", "weight": 10.0},
                "identity": {"name": "identity", "weight": 5.0},
            },
        }

    def networks(self, channels: DomainChannels) -> dict[str, NetworkSpec]:
        a, b = channels.a, channels.b
        return {
            "gen_ab": NetworkSpec("generators", "generator", {"in_channels": a, "out_channels": b}),
            "gen_ba": NetworkSpec("generators", "generator", {"in_channels": b, "out_channels": a}),
            "disc_a": NetworkSpec("discriminators", "discriminator", {"in_channels": a}),
            "disc_b": NetworkSpec("discriminators", "discriminator", {"in_channels": b}),
        }

    def setup(self) -> None:
        super().setup()
        self.cycle_terms = self.terms.in_slot("cycle")
        self.identity_terms = self.terms.in_slot("identity")
        # The two generators' features differ: each direction gets its own copy of a term.
        self.features_ab = self.feature_terms_of("features", self.gen_ab, suffix="_ab")
        self.features_ba = self.feature_terms_of("features", self.gen_ba, suffix="_ba")
        self.pool_a = self.image_pool("pool_a", self.pool_size)
        self.pool_b = self.image_pool("pool_b", self.pool_size)
        # One Adam for both generators and one for both discriminators, as in the paper's code.
        self.opt_gen = self.optimizer("gen", [self.gen_ab, self.gen_ba])
        self.opt_disc = self.optimizer("disc", [self.disc_a, self.disc_b])
        self.heads = self.trainable_terms(self.features_ab + self.features_ba)  # with opt_gen

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        real_a, real_b = batch["A"], batch["B"]
        fake_b = self.gen_ab(real_a)
        rec_a = self.gen_ba(fake_b)
        fake_a = self.gen_ba(real_b)
        rec_b = self.gen_ab(fake_a)
        # Generators first, against both discriminators (frozen); then the discriminators.
        total, terms = update(self.opt_gen, self.heads, frozen=[self.disc_a, self.disc_b],
                              loss=lambda: self.generator_objective(real_a, fake_b, rec_a,
                                                                    real_b, fake_a, rec_b))
        _, loss_d_a, loss_d_b = update(self.opt_disc, loss=lambda: self.discriminator_objective(
            real_a, fake_b, real_b, fake_a))
        return {"D_A": loss_d_a.detach(), "D_B": loss_d_b.detach(), "G": total.detach()} | {
            k: v.detach() for k, v in terms.items()}

    def generator_objective(self, real_a: Tensor, fake_b: Tensor, rec_a: Tensor,
                            real_b: Tensor, fake_a: Tensor, rec_b: Tensor
                            ) -> tuple[Tensor, dict[str, Tensor]]:
        """The generators' objective and its terms: fool both discriminators, reconstruct
        through the cycle, keep identities."""
        terms: dict[str, Tensor] = {}
        if self.generator_adversarial:
            terms["G_adv"] = (self.adversarial.generator_loss(self.disc_b(fake_b))
                              + self.adversarial.generator_loss(self.disc_a(fake_a)))
        for key, loss in self.cycle_terms:
            terms[key] = self.by_domain(loss(rec_a, real_a), loss(rec_b, real_b))
        if self.identity_terms:
            same_b, same_a = self.gen_ab(real_b), self.gen_ba(real_a)
            for key, loss in self.identity_terms:
                # Keyword order keeps the B part computed first, as it always was.
                terms[key] = self.by_domain(against_b=loss(same_b, real_b),
                                            against_a=loss(same_a, real_a))
        for (key, loss_ab), (_, loss_ba) in zip(self.features_ab, self.features_ba, strict=True):
            terms[key.removesuffix("_ab")] = (loss_ab(self.gen_ab, real_a, fake_b)
                                              + loss_ba(self.gen_ba, real_b, fake_a))
        return torch.stack(list(terms.values())).sum(), terms

    def discriminator_objective(self, real_a: Tensor, fake_b: Tensor, real_b: Tensor,
                                fake_a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Both discriminators' loss, then each one's (A's, B's): real images vs generated
        ones drawn through the history pools, B's first."""
        loss_d_b = discriminator_loss(self.adversarial, self.disc_b, real_b,
                                      self.pool_b.query(fake_b), self.d_loss_scale)
        loss_d_a = discriminator_loss(self.adversarial, self.disc_a, real_a,
                                      self.pool_a.query(fake_a), self.d_loss_scale)
        return loss_d_a + loss_d_b, loss_d_a, loss_d_b

    def by_domain(self, against_a: Tensor, against_b: Tensor) -> Tensor:
        """The sum of a term's two parts, the one against domain A times ``weight_a``, the one
        against domain B times ``weight_b``."""
        # A factor of 1 adds no multiplication: the default step stays bit for bit what it was
        # (and a two-operand sum is the same in either order).
        if self.weight_a != 1.0:
            against_a = against_a * self.weight_a
        if self.weight_b != 1.0:
            against_b = against_b * self.weight_b
        return against_a + against_b

    @torch.no_grad()
    def sample_images(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Both directions: A, G_AB(A), G_BA(G_AB(A)), then the same from B; with identity
        terms in the recipe also G_BA(A) and G_AB(B), which those terms hold to A and B."""
        real_a, real_b = batch["A"], batch["B"]
        fake_b, fake_a = self.gen_ab(real_a), self.gen_ba(real_b)
        columns = {"real A": real_a, "fake B": fake_b, "reconstructed A": self.gen_ba(fake_b)}
        if self.identity_terms:  # weight-0 terms are left out of the slot: nothing to show
            columns["identity A"] = self.gen_ba(real_a)
        columns |= {"real B": real_b, "fake A": fake_a, "reconstructed B": self.gen_ab(fake_a)}
        if self.identity_terms:
            columns["identity B"] = self.gen_ab(real_b)
        return columns
