"""The ResNet generator of CycleGAN (Johnson et al.'s style-transfer network).

Layer for layer the official pytorch-CycleGAN-and-pix2pix ``ResnetGenerator``: the same
modules in the same order under the same attribute names, so official checkpoints load
and ``model[i]`` indices (CUT takes features from 0, 4, 8, 12 and 16) mean the same thing.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from imtrans.nn.layers import (
    InitName,
    NormName,
    PaddingName,
    UpsamplingName,
    check_choice,
    check_init,
    check_int,
    conv_bias,
    init_weights,
    norm_layer,
    preset,
    upsample_block,
)

__all__ = ["ResnetBlock", "ResnetGenerator", "resnet", "resnet_6blocks", "resnet_9blocks"]

_PADS: dict[str, type[nn.Module]] = {
    "reflect": nn.ReflectionPad2d,
    "replicate": nn.ReplicationPad2d,
}


class ResnetBlock(nn.Module):
    """Residual block: ``x + (pad, conv3x3, norm, ReLU, [dropout], pad, conv3x3, norm)(x)``.

    Args:
        channels: Input and output channels.
        padding: ``"reflect"``, ``"replicate"``, or ``"zero"`` (the convs pad themselves).
        norm: Normalisation after each conv.
        dropout: Whether to put ``Dropout(0.5)`` between the two convs.

    Example:
        >>> block = ResnetBlock(256, padding="reflect", norm="instance", dropout=False)
    """

    def __init__(self, channels: int, *, padding: PaddingName, norm: NormName, dropout: bool):
        super().__init__()
        check_choice("padding", padding, PaddingName)
        bias = conv_bias(norm)
        layers: list[nn.Module] = []
        for second in (False, True):
            if padding == "zero":
                layers.append(nn.Conv2d(channels, channels, 3, padding=1, bias=bias))
            else:
                layers += [_PADS[padding](1), nn.Conv2d(channels, channels, 3, bias=bias)]
            layers.append(norm_layer(norm, channels))
            if not second:
                layers.append(nn.ReLU(True))
                if dropout:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the residual to ``x``; the shape is unchanged."""
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Encoder, residual blocks, decoder; output in [-1, 1] through a Tanh.

    ``model`` is one ``nn.Sequential``: 0 pad, 1 conv7x7, 2 norm, 3 ReLU, 4/7 the two
    stride-2 convs (each followed by norm and ReLU), then the residual blocks from index 10,
    then upsampling, a final pad, conv7x7 and Tanh. Input height and width must be
    multiples of ``size_multiple``. ``feature_layers`` is ``model``, so
    :func:`imtrans.nn.generator_features` can take features from inside it.

    Args:
        in_channels: Channels of the input image.
        out_channels: Channels of the output image.
        ngf: Channels after the first conv; the bottleneck has ``4 * ngf``.
        n_blocks: Number of residual blocks.
        norm: Normalisation layer.
        dropout: Dropout(0.5) inside each residual block.
        padding: Padding of the residual blocks' convs.
        upsampling: ``"transposed"`` convs (as in the paper) or ``"resize_conv"``.

    Example:
        >>> net = ResnetGenerator(3, 3, ngf=64, n_blocks=9)
        >>> net(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 3, 64, 64])
    """

    size_multiple: ClassVar[int] = 4  # two stride-2 downsamplings

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: NormName = "instance",
        dropout: bool = False,
        padding: PaddingName = "reflect",
        upsampling: UpsamplingName = "transposed",
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=bias),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                norm_layer(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [
            ResnetBlock(ngf * 4, padding=padding, norm=norm, dropout=dropout)
            for _ in range(n_blocks)
        ]
        for mult in (4, 2):
            layers += upsample_block(ngf * mult, ngf * mult // 2, upsampling=upsampling, bias=bias)
            layers += [norm_layer(norm, ngf * mult // 2), nn.ReLU(True)]
        # The last conv feeds Tanh, not a norm, so it always has a bias.
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    @property
    def feature_layers(self) -> nn.Sequential:
        """The layers in order (``model``): their composition is :meth:`forward`."""
        return self.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate ``x`` of shape (N, in_channels, H, W) to (N, out_channels, H, W)."""
        return self.model(x)


def resnet(
    *,
    in_channels: int = 3,
    out_channels: int = 3,
    ngf: int = 64,
    n_blocks: int = 9,
    norm: NormName = "instance",
    dropout: bool = False,
    padding: PaddingName = "reflect",
    upsampling: UpsamplingName = "transposed",
    init: InitName = "normal",
    init_gain: float = 0.02,
) -> ResnetGenerator:
    """ResNet generator (CycleGAN) with any number of residual blocks.

    Args:
        in_channels: Channels of the input image.
        out_channels: Channels of the output image.
        ngf: Width of the first conv; the bottleneck has ``4 * ngf`` channels.
        n_blocks: Number of residual blocks (0 or more).
        norm: ``"instance"``, ``"batch"``, ``"syncbatch"`` or ``"none"``.
        dropout: Dropout(0.5) inside each residual block.
        padding: ``"reflect"``, ``"replicate"`` or ``"zero"`` padding in the blocks.
        upsampling: ``"transposed"`` convs or ``"resize_conv"`` (upsample then conv).
        init: Weight initialisation: ``"normal"``, ``"xavier"``, ``"kaiming"``,
            ``"orthogonal"``.
        init_gain: Standard deviation or gain of the initialisation.

    Returns:
        The initialised generator.

    Raises:
        InvalidArgumentError: An argument is out of range or not an accepted name.

    Example:
        >>> net = resnet(n_blocks=4, ngf=32)
        >>> net.size_multiple
        4
    """
    check_int("in_channels", in_channels, 1)
    check_int("out_channels", out_channels, 1)
    check_int("ngf", ngf, 1)
    check_int("n_blocks", n_blocks, 0)
    check_choice("norm", norm, NormName)
    check_choice("padding", padding, PaddingName)
    check_choice("upsampling", upsampling, UpsamplingName)
    check_init(init, init_gain)
    net = ResnetGenerator(
        in_channels,
        out_channels,
        ngf=ngf,
        n_blocks=n_blocks,
        norm=norm,
        dropout=dropout,
        padding=padding,
        upsampling=upsampling,
    )
    init_weights(net, init, init_gain)
    return net


resnet_9blocks = preset(
    resnet,
    "resnet_9blocks",
    "ResNet generator with 9 residual blocks (CycleGAN's choice for 256x256 images).",
    n_blocks=9,
)
resnet_6blocks = preset(
    resnet,
    "resnet_6blocks",
    "ResNet generator with 6 residual blocks (CycleGAN's choice for 128x128 images).",
    n_blocks=6,
)
