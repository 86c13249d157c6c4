"""The PatchGAN discriminator of pix2pix and CycleGAN.

Layer for layer the official pytorch-CycleGAN-and-pix2pix ``NLayerDiscriminator``, under
the same attribute names, so official checkpoints load. Each output logit judges one
overlapping patch (70x70 pixels with the default three layers) as real or fake.
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

__all__ = ["PatchDiscriminator", "patchgan"]

_MAX_MULT = 8  # widths stop growing at 8 * ndf


class PatchDiscriminator(nn.Module):
    """Stack of 4x4 convs that maps an image to a map of real/fake logits.

    ``n_layers`` stride-2 convs (the first without norm), one stride-1 conv with norm, then
    a stride-1 conv to one channel. A 256x256 input gives a 30x30 map with ``n_layers=3``.
    The output is raw logits: the loss applies the sigmoid, if any.

    Args:
        in_channels: Channels of the input (for pix2pix, input and output image stacked).
        ndf: Channels of the first conv; each later layer doubles it, up to ``8 * ndf``.
        n_layers: Number of stride-2 convs.
        norm: Normalisation layer.

    Example:
        >>> net = PatchDiscriminator(3, ndf=8, n_layers=3, norm="instance")
        >>> net(torch.zeros(1, 3, 256, 256)).shape
        torch.Size([1, 1, 30, 30])
    """

    def __init__(
        self, in_channels: int, *, ndf: int = 64, n_layers: int = 3, norm: NormName = "instance"
    ):
        super().__init__()
        bias = conv_bias(norm)
        # The first conv has no norm after it, so it keeps its bias whatever the norm.
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
        ]
        channels = ndf
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1  # the last of these keeps the resolution
            out = ndf * min(2**n, _MAX_MULT)
            layers += [
                nn.Conv2d(channels, out, 4, stride, 1, bias=bias),
                norm_layer(norm, out),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_channels, H, W) to a (N, 1, h, w) logit map."""
        return self.model(x)


def patchgan(
    *,
    in_channels: int = 3,
    ndf: int = 64,
    n_layers: int = 3,
    norm: NormName = "instance",
    init: InitName = "normal",
    init_gain: float = 0.02,
) -> PatchDiscriminator:
    """PatchGAN discriminator: a map of real/fake logits, one per image patch.

    Args:
        in_channels: Channels of the input; 6 for pix2pix's conditional discriminator
            (input and output image stacked), 3 for CycleGAN's.
        ndf: Width of the first conv; later layers double it, up to ``8 * ndf``.
        n_layers: Number of stride-2 convs (1 or more); 3 gives 70x70 patches.
        norm: ``"instance"``, ``"batch"``, ``"syncbatch"`` or ``"none"``.
        init: Weight initialisation: ``"normal"``, ``"xavier"``, ``"kaiming"``,
            ``"orthogonal"``.
        init_gain: Standard deviation or gain of the initialisation.

    Returns:
        The initialised discriminator.

    Raises:
        InvalidArgumentError: An argument is out of range or not an accepted name.

    Example:
        >>> net = patchgan(in_channels=6, norm="batch")
        >>> net(torch.zeros(1, 6, 256, 256)).shape
        torch.Size([1, 1, 30, 30])
    """
    check_int("in_channels", in_channels, 1)
    check_int("ndf", ndf, 1)
    check_int("n_layers", n_layers, 1)
    check_choice("norm", norm, NormName)
    check_init(init, init_gain)
    net = PatchDiscriminator(in_channels, ndf=ndf, n_layers=n_layers, norm=norm)
    init_weights(net, init, init_gain)
    return net
