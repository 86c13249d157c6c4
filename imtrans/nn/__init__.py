"""Networks: generators, discriminators and the builders that make them initialised.

The builders (``resnet_9blocks``, ``unet_256``, ``patchgan``, ...) take keyword arguments
only and are what the component registry exposes to recipes. :func:`generator_features` takes
features from inside a generator that exposes its layers (:mod:`imtrans.nn.features`).
"""

from __future__ import annotations

from imtrans.nn.discriminators import PatchDiscriminator, PixelDiscriminator, patchgan, pixel
from imtrans.nn.features import (
    LayeredGenerator,
    feature_channels,
    feature_layers_of,
    generator_features,
)
from imtrans.nn.generators import (
    ResnetGenerator,
    UnetGenerator,
    resnet,
    resnet_6blocks,
    resnet_9blocks,
    unet,
    unet_128,
    unet_256,
)
from imtrans.nn.layers import InitName, NormName, PaddingName, UpsamplingName, init_weights

__all__ = [
    "InitName",
    "LayeredGenerator",
    "NormName",
    "PaddingName",
    "PatchDiscriminator",
    "PixelDiscriminator",
    "ResnetGenerator",
    "UnetGenerator",
    "UpsamplingName",
    "feature_channels",
    "feature_layers_of",
    "generator_features",
    "init_weights",
    "patchgan",
    "pixel",
    "resnet",
    "resnet_6blocks",
    "resnet_9blocks",
    "unet",
    "unet_128",
    "unet_256",
]
