"""Losses for image-to-image translation.

Adversarial losses (:mod:`imtrans.losses.adversarial`) turn discriminator logits into the
discriminator and generator objectives; reconstruction losses
(:mod:`imtrans.losses.reconstruction`) compare a generated image with a target image; feature
losses (:mod:`imtrans.losses.feature`) compare a generator's output with its input inside the
generator and may own trainable parameters. Each loss is a pure function plus a thin
``nn.Module`` whose keyword-only arguments a recipe may set.

Example:
    >>> import torch
    >>> from imtrans.losses import CycleLoss, LSGANLoss
    >>> LSGANLoss().generator_loss(torch.ones(1, 1, 30, 30))
    tensor(0.)
    >>> CycleLoss().weight
    10.0
"""

from __future__ import annotations

from imtrans.losses.adversarial import (
    AdversarialLoss,
    GPMode,
    HingeLoss,
    LSGANLoss,
    VanillaGANLoss,
    WGANGPLoss,
    gan_loss,
    gradient_penalty,
    hinge_loss,
    lsgan_loss,
    wasserstein_loss,
)
from imtrans.losses.feature import GeneratorFeatureLoss
from imtrans.losses.reconstruction import (
    CycleLoss,
    IdentityLoss,
    L1Loss,
    PairLoss,
    Reduction,
    check_weight,
    l1_loss,
)

__all__ = [
    "AdversarialLoss",
    "CycleLoss",
    "GPMode",
    "GeneratorFeatureLoss",
    "HingeLoss",
    "IdentityLoss",
    "L1Loss",
    "LSGANLoss",
    "PairLoss",
    "Reduction",
    "VanillaGANLoss",
    "WGANGPLoss",
    "check_weight",
    "gan_loss",
    "gradient_penalty",
    "hinge_loss",
    "l1_loss",
    "lsgan_loss",
    "wasserstein_loss",
]
