"""The pixel discriminator (1x1 PatchGAN) of pix2pix.

Layer for layer the official pytorch-CycleGAN-and-pix2pix ``PixelDiscriminator``, under
the same attribute names, so official checkpoints load. Every pixel is judged on its own,
which pushes colours to be right but says nothing about structure.
"""

from __future__ import annotations

import torch
from torch import nn

from imtrans.nn.layers import (
    InitName,
    NormName,
    check_choice,
    check_init,
    check_int,
    conv_bias,
    init_weights,
    norm_layer,
)

__all__ = ["PixelDiscriminator", "pixel"]


class PixelDiscriminator(nn.Module):
    """Three 1x1 convs mapping each pixel to one real/fake logit.

    Args:
        in_channels: Channels of the input.
        ndf: Channels of the first conv; the second has ``2 * ndf``.
        norm: Normalisation after the second conv.

    Example:
        >>> net = PixelDiscriminator(3, ndf=8)
        >>> net(torch.zeros(1, 3, 16, 16)).shape
        torch.Size([1, 1, 16, 16])
    """

    def __init__(self, in_channels: int, *, ndf: int = 64, norm: NormName = "instance"):
        super().__init__()
        bias = conv_bias(norm)
        # The last conv's bias follows the norm rule too, as in the official code (so a
        # batch-norm pixel discriminator has none): keeps official checkpoints loadable.
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            norm_layer(norm, ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_channels, H, W) to a (N, 1, H, W) logit map."""
        return self.net(x)


def pixel(
    *,
    in_channels: int = 3,
    ndf: int = 64,
    norm: NormName = "instance",
    init: InitName = "normal",
    init_gain: float = 0.02,
) -> PixelDiscriminator:
    """Pixel discriminator (1x1 PatchGAN): one real/fake logit per pixel.

    Args:
        in_channels: Channels of the input (6 for pix2pix's conditional discriminator).
        ndf: Width of the first conv; the second has ``2 * ndf`` channels.
        norm: ``"instance"``, ``"batch"``, ``"syncbatch"`` or ``"none"``.
        init: Weight initialisation: ``"normal"``, ``"xavier"``, ``"kaiming"``,
            ``"orthogonal"``.
        init_gain: Standard deviation or gain of the initialisation.

    Returns:
        The initialised discriminator.

    Raises:
        InvalidArgumentError: An argument is out of range or not an accepted name.

    Example:
        >>> sum(p.numel() for p in pixel().parameters())
        8705
    """
    check_int("in_channels", in_channels, 1)
    check_int("ndf", ndf, 1)
    check_choice("norm", norm, NormName)
    check_init(init, init_gain)
    net = PixelDiscriminator(in_channels, ndf=ndf, norm=norm)
    init_weights(net, init, init_gain)
    return net
