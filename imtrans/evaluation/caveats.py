"""Warnings that go with scores computed on too few images.

FID's estimator is biased upward, and the bias grows as the image count falls (two sets of 50
real photos of monet2photo are at FID 150 from each other), so FID on a handful of images is
not comparable with published figures or with FID on another count. KID is unbiased but noisy
on few images, and once a set is no larger than KID's subset size every subset holds the same
images, so ``kid_std`` (near 0) no longer shows that noise. PSNR and SSIM are means over the
images, unbiased, but on a few images they depend on which images those are.

Example:
    >>> small_sample_warnings(["psnr", "ssim"], generated=5, real=5)
    ['PSNR and SSIM averaged over 5 images depend strongly on which images those are; use at \
least 50 images (the papers use the full test split)']
    >>> small_sample_warnings(["fid"], generated=100, real=100)
    []
"""

from __future__ import annotations

from collections.abc import Iterable

from imtrans.evaluation.scores import KID_SUBSET_SIZE

__all__ = ["MIN_IMAGES", "small_sample_warnings", "warned_metrics"]

#: Fewer images than this and a score carries a warning. 50 is KID's subset size and the
#: smallest count this project's docs compare FID on; the papers use the whole test split.
MIN_IMAGES = 50

_ADVICE = f"use at least {MIN_IMAGES} images (the papers use the full test split)"


def _counted(generated: int, real: int) -> str:
    return f"{generated} images" if generated == real else \
        f"{generated} generated and {real} real images"


def _caveats(metrics: Iterable[str], generated: int, real: int) -> list[tuple[set[str], str]]:
    """Each warning with the metrics it concerns."""
    chosen = set(metrics)
    found: list[tuple[set[str], str]] = []
    fewest = min(generated, real)  # FID and KID estimate from both sets
    if "fid" in chosen and fewest < MIN_IMAGES:
        found.append(({"fid"}, f"FID on {_counted(generated, real)} is strongly biased upward "
                               "and comparable only with FID on as many images; compare KID, "
                               f"or {_ADVICE}"))
    if "kid" in chosen and fewest < MIN_IMAGES:
        subset = min(KID_SUBSET_SIZE, generated, real)
        found.append(({"kid", "kid_std"},
                      f"KID on {_counted(generated, real)} is unbiased but noisy, and its "
                      f"subsets of {subset} images overlap so much that kid_std understates "
                      f"that noise; {_ADVICE}"))
    pixel = [m for m in ("psnr", "ssim") if m in chosen]
    if pixel and generated < MIN_IMAGES:
        found.append((set(pixel), f"{' and '.join(m.upper() for m in pixel)} averaged over "
                                  f"{generated} images depend"
                                  f"{'s' if len(pixel) == 1 else ''} strongly on which images "
                                  f"those are; {_ADVICE}"))
    return found


def small_sample_warnings(metrics: Iterable[str], generated: int, real: int) -> list[str]:
    """What to say about ``metrics`` computed on ``generated`` translations and ``real``
    target images: one sentence per kind of score, none at :data:`MIN_IMAGES` or more."""
    return [text for _, text in _caveats(metrics, generated, real)]


def warned_metrics(metrics: Iterable[str], generated: int, real: int) -> set[str]:
    """Which of ``metrics`` :func:`small_sample_warnings` warns about (to mark them)."""
    marked: set[str] = set()
    for concerned, _ in _caveats(metrics, generated, real):
        marked |= concerned
    return marked
