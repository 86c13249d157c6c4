"""The U-Net generator of pix2pix.

Built like the official pytorch-CycleGAN-and-pix2pix ``UnetGenerator``: blocks nested
from the outside in, each downsampling, running the block inside it, upsampling, and
concatenating its input with the result (the skip connection). Module names and order
match the official ones, so official checkpoints load.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from torch import nn

from imtrans.errors import InvalidArgumentError
from imtrans.nn.layers import (
    InitName,
    NormName,
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

__all__ = ["UnetBlock", "UnetGenerator", "unet", "unet_128", "unet_256"]

BlockRole = Literal["outermost", "middle", "innermost"]


class UnetBlock(nn.Module):
    """One level of the U-Net: down, the inner block, up, then concatenate with the input.

    ``"outermost"`` has no norm or activation before its down conv, ends in Tanh and
    returns the result without concatenating. ``"innermost"`` has no inner block and no
    norm after its down conv. ``"middle"`` blocks have both norms, and Dropout(0.5) at
    the end when ``dropout`` is set.

    Args:
        outer_channels: Channels this block returns before the concatenation.
        inner_channels: Channels of the down conv's output.
        role: ``"outermost"``, ``"middle"`` or ``"innermost"``.
        inner: The nested block (required unless innermost).
        in_channels: Input channels when they differ from ``outer_channels`` (outermost).
        norm: Normalisation layer.
        dropout: Dropout(0.5) after the up path (middle blocks only).
        upsampling: ``"transposed"`` (4x4, stride 2) or ``"resize_conv"``.

    Raises:
        InvalidArgumentError: ``role`` is unknown, or ``inner`` is missing for a
            non-innermost block.

    Example:
        >>> core = UnetBlock(512, 512, role="innermost", norm="batch")
        >>> UnetBlock(256, 512, role="middle", inner=core, norm="batch")(
        ...     torch.zeros(2, 256, 4, 4)).shape
        torch.Size([2, 512, 4, 4])
    """

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        *,
        role: BlockRole,
        inner: UnetBlock | None = None,
        in_channels: int | None = None,
        norm: NormName,
        dropout: bool = False,
        upsampling: UpsamplingName = "transposed",
    ):
        super().__init__()
        check_choice("role", role, BlockRole)
        self.outermost = role == "outermost"
        bias = conv_bias(norm)
        down_conv = nn.Conv2d(in_channels or outer_channels, inner_channels, 4, 2, 1, bias=bias)
        # The innermost block's up path sees only its own features; the others see the
        # inner block's concatenation, twice as wide.
        up_in = inner_channels if role == "innermost" else inner_channels * 2
        up = upsample_block(
            up_in,
            outer_channels,
            upsampling=upsampling,
            bias=True if self.outermost else bias,  # outermost feeds Tanh, not a norm
            kernel_size=4,
            output_padding=0,
        )
        # The in-place LeakyReLU also rewrites this block's input, so the skip connection
        # carries the activated features; the official network does the same, and keeping
        # it means official weights give the same outputs.
        down: list[nn.Module] = [nn.LeakyReLU(0.2, True), down_conv]
        layers: list[nn.Module]
        if role == "innermost":
            layers = [*down, nn.ReLU(True), *up, norm_layer(norm, outer_channels)]
        elif inner is None:
            raise InvalidArgumentError(f"a {role} U-Net block needs an inner block; got None")
        elif role == "outermost":
            layers = [down_conv, inner, nn.ReLU(True), *up, nn.Tanh()]
        else:
            layers = [*down, norm_layer(norm, inner_channels), inner, nn.ReLU(True), *up]
            layers.append(norm_layer(norm, outer_channels))
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block; non-outermost blocks return ``cat([x, f(x)])`` on channels."""
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` stride-2 downsamplings and skip connections.

    Widths go ngf, 2ngf, 4ngf, then 8ngf for the remaining ``num_downs - 3`` levels; so a
    256x256 input with ``num_downs=8`` reaches a 1x1 bottleneck. Input height and width
    must be multiples of ``size_multiple = 2 ** num_downs``.

    Args:
        in_channels: Channels of the input image.
        out_channels: Channels of the output image.
        num_downs: Number of downsamplings (5 or more).
        ngf: Channels after the first conv.
        norm: Normalisation layer.
        dropout: Dropout(0.5) in the ``num_downs - 5`` innermost 8ngf middle blocks.
        upsampling: ``"transposed"`` convs or ``"resize_conv"``.

    Example:
        >>> net = UnetGenerator(3, 3, num_downs=5, ngf=8)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    size_multiple: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_downs: int = 8,
        ngf: int = 64,
        norm: NormName = "batch",
        dropout: bool = True,
        upsampling: UpsamplingName = "transposed",
    ):
        super().__init__()
        self.size_multiple = 2**num_downs
        make = partial(UnetBlock, norm=norm, upsampling=upsampling)
        # Built from the inside out: each block wraps the previous one.
        block = make(ngf * 8, ngf * 8, role="innermost")
        for _ in range(num_downs - 5):
            block = make(ngf * 8, ngf * 8, role="middle", inner=block, dropout=dropout)
        for mult in (4, 2, 1):
            block = make(ngf * mult, ngf * mult * 2, role="middle", inner=block)
        self.model = make(out_channels, ngf, role="outermost", inner=block, in_channels=in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate ``x`` of shape (N, in_channels, H, W) to (N, out_channels, H, W)."""
        return self.model(x)


def unet(
    *,
    in_channels: int = 3,
    out_channels: int = 3,
    num_downs: int = 8,
    ngf: int = 64,
    norm: NormName = "batch",
    dropout: bool = True,
    upsampling: UpsamplingName = "transposed",
    init: InitName = "normal",
    init_gain: float = 0.02,
) -> UnetGenerator:
    """U-Net generator (pix2pix) with any number of downsamplings.

    Args:
        in_channels: Channels of the input image.
        out_channels: Channels of the output image.
        num_downs: Number of stride-2 downsamplings (5 or more); inputs must be multiples
            of ``2 ** num_downs`` in height and width.
        ngf: Width of the first conv; the inner levels have ``8 * ngf`` channels.
        norm: ``"batch"``, ``"instance"``, ``"syncbatch"`` or ``"none"``.
        dropout: Dropout(0.5) in the innermost ``num_downs - 5`` middle blocks (pix2pix's
            noise source).
        upsampling: ``"transposed"`` convs or ``"resize_conv"`` (upsample then conv).
        init: Weight initialisation: ``"normal"``, ``"xavier"``, ``"kaiming"``,
            ``"orthogonal"``.
        init_gain: Standard deviation or gain of the initialisation.

    Returns:
        The initialised generator.

    Raises:
        InvalidArgumentError: An argument is out of range or not an accepted name.

    Example:
        >>> net = unet(num_downs=6, ngf=32)
        >>> net.size_multiple
        64
    """
    check_int("in_channels", in_channels, 1)
    check_int("out_channels", out_channels, 1)
    check_int("num_downs", num_downs, 5)
    check_int("ngf", ngf, 1)
    check_choice("norm", norm, NormName)
    check_choice("upsampling", upsampling, UpsamplingName)
    check_init(init, init_gain)
    net = UnetGenerator(
        in_channels,
        out_channels,
        num_downs=num_downs,
        ngf=ngf,
        norm=norm,
        dropout=dropout,
        upsampling=upsampling,
    )
    init_weights(net, init, init_gain)
    return net


unet_256 = preset(
    unet,
    "unet_256",
    "U-Net generator with 8 downsamplings, for 256x256 images (the pix2pix default).",
    num_downs=8,
)
unet_128 = preset(
    unet, "unet_128", "U-Net generator with 7 downsamplings, for 128x128 images.", num_downs=7
)
