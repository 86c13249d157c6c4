"""Generators: the ResNet generator of CycleGAN and the U-Net of pix2pix."""

from __future__ import annotations

from imtrans.nn.generators.resnet import (
    ResnetBlock,
    ResnetGenerator,
    resnet,
    resnet_6blocks,
    resnet_9blocks,
)
from imtrans.nn.generators.unet import UnetBlock, UnetGenerator, unet, unet_128, unet_256

__all__ = [
    "ResnetBlock",
    "ResnetGenerator",
    "UnetBlock",
    "UnetGenerator",
    "resnet",
    "resnet_6blocks",
    "resnet_9blocks",
    "unet",
    "unet_128",
    "unet_256",
]
