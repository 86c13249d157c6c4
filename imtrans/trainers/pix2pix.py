"""pix2pix (Isola et al., 2017): paired translation with a conditional discriminator."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from imtrans.trainers.adversarial import (
    AdversarialTrainer,
    check_adversarial_settings,
    discriminator_loss,
)
from imtrans.trainers.base import DomainChannels, NetworkSpec
from imtrans.trainers.updates import update

__all__ = ["Pix2PixTrainer"]


class Pix2PixTrainer(AdversarialTrainer):
    """pix2pix: one generator, a conditional discriminator on (input, output), L1 to the target.

    Defaults are the paper's: unet_256 generator with batch norm and dropout, 70x70
    PatchGAN on the 6-channel concatenation of input and output, vanilla GAN loss,
    L1 weight 100, no image history, and the discriminator loss halved.

    Args:
        pool_size: Generated images kept to update the discriminator with (0 in the paper).
        d_loss_scale: Factor on the discriminator loss (0.5 in the paper).
    """

    pair_slots: ClassVar[dict[str, str]] = {"reconstruction": "G(a) vs its paired target b"}

    feature_slots: ClassVar[dict[str, str]] = {
        "features": "G(a) vs a inside the generator (e.g. patchnce; needs a ResNet generator)",
    }

    translators: ClassVar[dict[str, str]] = {"AtoB": "gen"}

    gen: nn.Module
    disc: nn.Module

    def __init__(self, *, pool_size: int = 0, d_loss_scale: float = 0.5) -> None:
        check_adversarial_settings(pool_size=pool_size, d_loss_scale=d_loss_scale)
        self.pool_size = pool_size
        self.d_loss_scale = d_loss_scale

    @classmethod
    def recipe_defaults(cls) -> dict[str, Any]:
        return {
            "data": {"name": "aligned"},
            "generator": {"name": "unet_256", "norm": "batch", "dropout": True},
            "discriminator": {"name": "patchgan", "n_layers": 3, "norm": "batch"},
            "losses": {
                "adversarial": {"name": "gan"},
                "reconstruction": {"name": "l1", "weight": 100.0},
            },
        }

    def networks(self, channels: DomainChannels) -> dict[str, NetworkSpec]:
        a, b = channels.a, channels.b
        return {
            "gen": NetworkSpec("generators", "generator", {"in_channels": a, "out_channels": b}),
            # Conditional: the discriminator sees the input beside the (real or fake) output.
            "disc": NetworkSpec("discriminators", "discriminator", {"in_channels": a + b}),
        }

    def setup(self) -> None:
        super().setup()
        self.reconstruction_terms = self.terms.in_slot("reconstruction")
        self.feature_terms = self.feature_terms_of("features", self.gen)
        self.pool = self.image_pool("pool", self.pool_size)
        self.opt_gen = self.optimizer("gen", [self.gen])
        self.opt_disc = self.optimizer("disc", [self.disc])
        self.heads = self.trainable_terms(self.feature_terms)  # step with the generator

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        real_a, real_b = batch["A"], batch["B"]
        fake_b = self.gen(real_a)
        # Discriminator first, as in the paper's code; then the generator against it, frozen.
        loss_d = update(self.opt_disc,
                        loss=lambda: self.discriminator_objective(real_a, real_b, fake_b))
        total, terms = update(self.opt_gen, self.heads, frozen=[self.disc],
                              loss=lambda: self.generator_objective(real_a, real_b, fake_b))
        return {"D": loss_d.detach(), "G": total.detach()} | {
            k: v.detach() for k, v in terms.items()}

    def discriminator_objective(self, real_a: Tensor, real_b: Tensor, fake_b: Tensor) -> Tensor:
        """Real pairs (input, target) vs generated pairs (input, G(input)), drawn through the
        image pool."""
        fake_ab = self.pool.query(torch.cat([real_a, fake_b], 1))
        return discriminator_loss(self.adversarial, self.disc, torch.cat([real_a, real_b], 1),
                                  fake_ab, self.d_loss_scale)

    def generator_objective(self, real_a: Tensor, real_b: Tensor, fake_b: Tensor
                            ) -> tuple[Tensor, dict[str, Tensor]]:
        """The generator's objective and its terms: fool the discriminator and stay close to
        the target."""
        terms: dict[str, Tensor] = {}
        if self.generator_adversarial:
            terms["G_adv"] = self.adversarial.generator_loss(
                self.disc(torch.cat([real_a, fake_b], 1)))
        for key, loss in self.reconstruction_terms:
            terms[key] = loss(fake_b, real_b)
        for key, loss in self.feature_terms:
            terms[key] = loss(self.gen, real_a, fake_b)
        return torch.stack(list(terms.values())).sum(), terms

    @torch.no_grad()
    def sample_images(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The input, the generator's output and the paired target it is trained towards."""
        return {"input A": batch["A"], "fake B": self.gen(batch["A"]), "real B": batch["B"]}
