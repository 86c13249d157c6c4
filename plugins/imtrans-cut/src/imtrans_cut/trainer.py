"""CUT and FastCUT (Park et al., ECCV 2020): one-sided unpaired translation, one generator and
one discriminator, held to its input by PatchNCE instead of a cycle through an inverse network."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from imtrans import InvalidArgumentError
from imtrans.trainers import (
    AdversarialTrainer,
    DomainChannels,
    NetworkSpec,
    check_adversarial_settings,
    discriminator_loss,
    update,
)

__all__ = ["CUTTrainer"]


class CUTTrainer(AdversarialTrainer):
    """CUT: a generator, a PatchGAN discriminator and a PatchNCE term, no inverse network.

    Defaults are CUT's: resnet_9blocks generator and 70x70 PatchGAN with instance norm, no
    dropout, the non-saturating GAN loss (``gan``: BCE with logits against 1, which is
    softplus(-D(G(x))) for the generator), PatchNCE with lambda_NCE 1 on encoder layers
    0, 4, 8, 12, 16 plus identity NCE on G(y) vs y, no image history, the discriminator loss
    halved. FastCUT is ``nce_idt = false``, ``flip_equivariance = true`` and a PatchNCE weight
    of 10 (``recipes/fastcut_photo2monet.toml``).

    Each step updates the discriminator first, then the generator and the PatchNCE heads, as
    the official code does.

    Args:
        nce_idt: Add the identity NCE term NCE(G(y), y) and average it with NCE(G(x), x)
            (CUT: true; FastCUT: false). Needs equal channel counts in A and B.
        flip_equivariance: Flip the generator's input left to right at random (p = 0.5)
            and compare the output's features flipped back (FastCUT: true).
        d_loss_scale: Factor on the discriminator loss (0.5 in the official code).

    Raises:
        InvalidArgumentError: ``d_loss_scale`` is not positive.
    """

    pair_slots: ClassVar[dict[str, str]] = {}
    feature_slots: ClassVar[dict[str, str]] = {
        "nce": "G(a) vs a patch by patch inside G (PatchNCE), and G(b) vs b with nce_idt",
    }
    translators: ClassVar[dict[str, str]] = {"AtoB": "gen"}

    gen: nn.Module
    disc: nn.Module

    def __init__(self, *, nce_idt: bool = True, flip_equivariance: bool = False,
                 d_loss_scale: float = 0.5) -> None:
        check_adversarial_settings(d_loss_scale=d_loss_scale)
        self.nce_idt = nce_idt
        self.flip_equivariance = flip_equivariance
        self._next_flip = False  # drawn by prepare_step before a compiled step
        self.d_loss_scale = d_loss_scale

    @classmethod
    def recipe_defaults(cls) -> dict[str, Any]:
        return {
            "data": {"name": "unaligned"},
            "generator": {"name": "resnet_9blocks", "norm": "instance", "dropout": False},
            "discriminator": {"name": "patchgan", "n_layers": 3, "norm": "instance"},
            "schedule": {"n_epochs": 200, "n_epochs_decay": 200},
            "losses": {
                "adversarial": {"name": "gan"},
                "nce": {"name": "patchnce", "weight": 1.0},
            },
        }

    def networks(self, channels: DomainChannels) -> dict[str, NetworkSpec]:
        a, b = channels.a, channels.b
        if a != b and self.nce_idt:
            raise InvalidArgumentError(f"nce_idt translates B images with the A -> B "
                                       f"generator, which needs equal channel counts, got A "
                                       f"{a} and B {b}; set nce_idt = false")
        return {
            "gen": NetworkSpec("generators", "generator", {"in_channels": a, "out_channels": b}),
            "disc": NetworkSpec("discriminators", "discriminator", {"in_channels": b}),
        }

    def setup(self) -> None:
        super().setup()
        self.nce_terms = self.feature_terms_of("nce", self.gen)
        self.opt_gen = self.optimizer("gen", [self.gen])
        self.opt_disc = self.optimizer("disc", [self.disc])
        self.heads = self.trainable_terms(self.nce_terms)  # step with the generator

    def prepare_step(self) -> None:
        """Draw the flip before a compiled step: its graph is one per branch, not a draw."""
        self._next_flip = self._draw_flip()

    def _draw_flip(self) -> bool:
        # Drawn on the CPU generator: no wait on the device, and checkpoints restore it.
        return self.flip_equivariance and bool(torch.rand(()) < 0.5)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        real_a, real_b = batch["A"], batch["B"]
        count = real_a.shape[0]
        # One generator pass over A (and B for the identity term), as the official code.
        inputs = torch.cat([real_a, real_b]) if self.nce_idt else real_a
        flipped = self._next_flip if torch.compiler.is_compiling() else self._draw_flip()
        if flipped:
            inputs = inputs.flip(3)
        fake = self.gen(inputs)
        fake_b, idt_b = fake[:count], fake[count:]
        # Discriminator first (real B vs the detached G(a)), then the generator and the heads.
        loss_d = update(self.opt_disc, loss=lambda: discriminator_loss(
            self.adversarial, self.disc, real_b, fake_b, self.d_loss_scale))
        total, terms, parts = update(
            self.opt_gen, self.heads, frozen=[self.disc],
            loss=lambda: self.generator_objective(real_a, real_b, fake_b, idt_b, flipped))
        return {"D": loss_d.detach(), "G": total.detach()} | {
            k: v.detach() for k, v in terms.items()} | parts

    def generator_objective(self, real_a: Tensor, real_b: Tensor, fake_b: Tensor,
                            idt_b: Tensor, flipped: bool
                            ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """The generator's objective, its terms, and the parts of the NCE terms (logged beside
        them, not added again): fool the discriminator, keep patches to their source."""
        terms: dict[str, Tensor] = {}
        parts: dict[str, Tensor] = {}  # logged beside the terms, not added again
        if self.generator_adversarial:
            terms["G_adv"] = self.adversarial.generator_loss(self.disc(fake_b))
        for key, loss in self.nce_terms:
            nce_x = loss(self.gen, real_a, fake_b, flipped=flipped)
            if self.nce_idt:
                nce_y = loss(self.gen, real_b, idt_b, flipped=flipped)
                parts |= {f"{key}_x": nce_x.detach(), f"{key}_y": nce_y.detach()}
                terms[key] = 0.5 * (nce_x + nce_y)
            else:
                terms[key] = nce_x
        return torch.stack(list(terms.values())).sum(), terms, parts

    @torch.no_grad()
    def sample_images(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """A and G(a); with ``nce_idt`` also B and G(b), the identity mapping NCE holds to b."""
        columns = {"real A": batch["A"], "fake B": self.gen(batch["A"])}
        if self.nce_idt:
            columns |= {"real B": batch["B"], "identity B": self.gen(batch["B"])}
        return columns
