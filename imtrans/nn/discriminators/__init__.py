"""Discriminators: the PatchGAN and the pixel (1x1 PatchGAN) discriminator."""

from __future__ import annotations

from imtrans.nn.discriminators.patchgan import PatchDiscriminator, patchgan
from imtrans.nn.discriminators.pixel import PixelDiscriminator, pixel

__all__ = ["PatchDiscriminator", "PixelDiscriminator", "patchgan", "pixel"]
