"""Scores between image sets: FID and KID on Inception features; MAE, MSE, PSNR and SSIM on
pixels.

The statistics come from well-kept libraries: torchmetrics computes FID (float64 means and
covariances, the matrix square root through eigenvalues) and KID (unbiased MMD^2 with the
cubic polynomial kernel over random subsets); kornia computes PSNR and SSIM. Features are
extracted once by :class:`~imtrans.evaluation.inception.InceptionFeatures` and handed to the
metrics through a pass-through feature module, so the two share one Inception pass.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from imtrans.errors import EvaluationError

__all__ = ["KID_SUBSETS", "KID_SUBSET_SIZE", "fid_score", "kid_score", "mae_mse", "psnr_ssim"]

KID_SUBSETS = 100
KID_SUBSET_SIZE = 50
#: KID draws its subsets at random; a fixed seed makes the score repeat exactly run to run.
KID_SEED = 0


class _Precomputed(nn.Module):
    """A "feature extractor" for torchmetrics that passes precomputed features through."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def _check(real: Tensor, fake: Tensor, minimum: int, what: str) -> None:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise EvaluationError(f"{what} needs two N x D feature sets, got {tuple(real.shape)} "
                              f"and {tuple(fake.shape)}")
    if min(len(real), len(fake)) < minimum:
        raise EvaluationError(f"{what} needs at least {minimum} images in each set, got "
                              f"{len(real)} real and {len(fake)} generated")


def _finite(real: Tensor, fake: Tensor) -> bool:
    return bool(torch.isfinite(real).all()) and bool(torch.isfinite(fake).all())


def fid_score(real: Tensor, fake: Tensor) -> float:
    """Fréchet Inception Distance between two feature sets (``N x 2048``, float64); NaN when
    a feature is not finite (which :mod:`~imtrans.evaluation.caveats` then warns of)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    _check(real, fake, 2, "FID")
    if not _finite(real, fake):  # the eigenvalue solver segfaults the process on NaN
        return math.nan
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1])).double()
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kid_score(real: Tensor, fake: Tensor, subsets: int = KID_SUBSETS,
              subset_size: int = KID_SUBSET_SIZE) -> tuple[float, float, int]:
    """Kernel Inception Distance: mean and standard deviation over ``subsets`` random subsets
    of ``subset_size`` (fewer when a set is smaller), and the subset size used; NaN when a
    feature is not finite."""
    from torchmetrics.image.kid import KernelInceptionDistance

    _check(real, fake, 2, "KID")
    size = min(subset_size, len(real), len(fake))
    if not _finite(real, fake):
        return math.nan, math.nan, size
    metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets,
                                     subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(KID_SEED)
        mean, std = metric.compute()
    return float(mean), float(std), size


def _same_shape(fake: Tensor, real: Tensor, what: str) -> None:
    if fake.shape != real.shape:
        raise EvaluationError(f"{what} compare images of one size, got {tuple(fake.shape)} "
                              f"and {tuple(real.shape)}")


def psnr_ssim(fake: Tensor, real: Tensor, data_range: tuple[float, float] | None = None
              ) -> tuple[Tensor, Tensor]:
    """Per-image PSNR (dB) and SSIM (11 x 11 Gaussian window) of two image batches.

    Without ``data_range``, ``uint8`` images in 0..255. With ``data_range = (low, high)``,
    images in those native units (any type): PSNR is ``10 log10(span^2 / MSE)`` and SSIM's
    constants take ``span = high - low`` as the data range (both are computed by kornia on
    ``(x - low) / span``, which gives exactly those).

    Example:
        >>> fake, real = torch.full((1, 1, 16, 16), 1010.0), torch.full((1, 1, 16, 16), 1000.0)
        >>> round(float(psnr_ssim(fake, real, (-1024, 3071))[0][0]), 3)  # 10 log10(4095^2 / 100)
        52.245
    """
    import kornia

    _same_shape(fake, real, "PSNR/SSIM")
    if data_range is None:
        x, y = fake.double() / 255.0, real.double() / 255.0
    else:
        low, high = data_range
        span = high - low
        x, y = (fake.double() - low) / span, (real.double() - low) / span
    # kornia's psnr pools the squared error over its whole input: call it image by image.
    psnr = torch.stack([kornia.metrics.psnr(a[None], b[None], 1.0)
                        for a, b in zip(x, y, strict=True)])
    ssim = kornia.metrics.ssim(x, y, window_size=11, max_val=1.0).flatten(1).mean(1)
    return psnr, ssim


def mae_mse(fake: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image mean absolute and mean squared difference, in the images' own units
    (native units, or 0..255 levels for ``uint8`` images), computed in float64.

    Example:
        >>> fake, real = torch.full((2, 1, 4, 4), 1010.0), torch.full((2, 1, 4, 4), 1000.0)
        >>> [v.tolist() for v in mae_mse(fake, real)]
        [[10.0, 10.0], [100.0, 100.0]]
    """
    _same_shape(fake, real, "MAE/MSE")
    difference = (fake.double() - real.double()).flatten(1)
    return difference.abs().mean(1), difference.square().mean(1)
