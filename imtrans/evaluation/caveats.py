"""Warnings that go with scores: computed on too few images, with non-standard Inception
weights, or degenerate (not a number, or FID 0 between different images).

FID's estimator is biased upward, and the bias grows as the image count falls (two sets of 50
real photos of monet2photo are at FID 150 from each other), so FID on a handful of images is
not comparable with published figures or with FID on another count. KID is unbiased but noisy
on few images, and once a set is no larger than KID's subset size every subset holds the same
images, so ``kid_std`` (near 0) no longer shows that noise. PSNR and SSIM are means over the
images (as are MAE and MSE), unbiased, but on a few images they depend on which images
those are.

Example:
    >>> small_sample_warnings(["psnr", "ssim"], generated=5, real=5)
    ['PSNR and SSIM averaged over 5 images depend strongly on which images those are; use at \
least 50 images (the papers use the full test split)']
    >>> small_sample_warnings(["fid"], generated=100, real=100)
    []

Weights other than the standard FID Inception (loaded only when the user trusts them) give
scores comparable with nothing published; a file that loads but computes garbage (a network
that returns zeros) gives FID 0 or NaN. Both are said next to the scores, never left silent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor

from imtrans.evaluation.native_units import named
from imtrans.evaluation.scores import KID_SUBSET_SIZE

__all__ = ["MIN_IMAGES", "degenerate_warnings", "inception_warnings", "small_sample_warnings",
           "standing_warnings", "warned_metrics"]

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
    pixel = [m for m in ("mae", "mse", "psnr", "ssim") if m in chosen]
    if pixel and generated < MIN_IMAGES:
        found.append((set(pixel), f"{named(pixel)} averaged over "
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


def inception_warnings(protocol: Mapping[str, Any]) -> list[str]:
    """What to say about a result's ``protocol`` Inception section: one sentence when the
    weights are not the standard file (``"standard": false``), none otherwise."""
    inception = protocol.get("inception")
    if not isinstance(inception, Mapping) or inception.get("standard") is not False:
        return []
    return [f"FID and KID were computed with non-standard Inception weights "
            f"{inception.get('file')} (sha256 {inception.get('sha256')}), trusted by the user: "
            "they are not comparable with published scores or with scores of the standard "
            "weights"]


def standing_warnings(metrics: Iterable[str], protocol: Mapping[str, Any]) -> list[str]:
    """The warnings that a result's metric names and protocol imply by themselves: too few
    images (:func:`small_sample_warnings`) and non-standard weights
    (:func:`inception_warnings`)."""
    images = protocol.get("images")
    images = images if isinstance(images, Mapping) else {}
    chosen = set(metrics)
    found = small_sample_warnings(chosen, int(images.get("generated", 0)),
                                  int(images.get("real", 0)))
    return found + (inception_warnings(protocol) if {"fid", "kid"} & chosen else [])


def _all_equal(rows: Tensor) -> bool:
    return len(rows) > 1 and bool((rows == rows[:1]).all())


def degenerate_warnings(scores: Mapping[str, float], *, generated: Tensor, real: Tensor,
                        fake_features: Tensor | None = None,
                        real_features: Tensor | None = None) -> list[str]:
    """What to say about scores that mean nothing: a score that is not a finite number; an
    Inception network that gives every image of a set the same features although the images
    differ; FID 0 between image sets that are not the same images.

    Args:
        scores: The scores, by metric name.
        generated, real: The ``uint8`` images scored (translations and real targets).
        fake_features, real_features: Their Inception features, when FID or KID was computed.
    """
    found = [f"{name} is {value}, not a number a score can be: the Inception weights or the "
             "generator's outputs are broken" for name, value in scores.items()
             if not math.isfinite(value)]
    inception_scores = {"fid", "kid"} & set(scores)
    for what, features in (("generated", fake_features), ("real", real_features)):
        if inception_scores and features is not None and not bool(features.isfinite().all()):
            found.append(f"the Inception network gave {what} images features that are not "
                         "finite numbers: the Inception weights are broken")
    for what, images, features in (("generated", generated, fake_features),
                                   ("real", real, real_features)):
        if inception_scores and features is not None and _all_equal(features) \
                and not _all_equal(images):
            found.append(f"the Inception network gave all {len(features)} {what} images the "
                         "same features although the images differ, so FID and KID cannot "
                         "tell images apart: the Inception weights are broken")
    fid = scores.get("fid")
    same = generated.shape == real.shape and bool(generated.eq(real).all())
    if fid is not None and math.isfinite(fid) and abs(fid) < 1e-6 and not same:
        found.append(f"FID is {fid:.3g} between generated and real images that differ: a score "
                     "no real network gives; the Inception weights are broken")
    return found
