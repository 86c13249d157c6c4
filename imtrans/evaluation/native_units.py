"""Which scores a run's data allows, in which units: 8-bit photos or native scientific values.

A run trained on plain 8-bit images (checkpoints without ``values``, or ``uint8`` domains in
0..255) is evaluated as it always was: test images and translations as ``uint8``, PSNR and SSIM
on [0, 1]. Any other run (16-bit CT in Hounsfield units, float or multiband images, an explicit
or ``"auto"`` value range) is evaluated in *native units*: the translations are mapped back
with the output domain's value range, and the pixel scores compare them with the ground truth
as its files hold it:

- ``mae`` and ``mse``: the mean absolute and squared difference, per image then averaged.
- ``psnr``: ``10 log10(span^2 / MSE)`` with ``span`` the output range's ``high - low``.
- ``ssim``: with ``data_range = span``.

FID and KID run an Inception network trained on photos: they apply only to translations that
are 8-bit images of 1 or 3 channels (4 with the alpha dropped), and are refused otherwise.

Example:
    >>> from imtrans.data.value_range import DomainValues, ValueRange
    >>> ct = DomainValues(ValueRange(-1024, 3071), "int16", 1)
    >>> is_plain_8bit(ct), is_photo(ct), describe(ct)
    (False, False, '1-band int16')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from imtrans.core.components import Components
from imtrans.data.value_range import DomainValues
from imtrans.errors import EvaluationError
from imtrans.recipe import Recipe

__all__ = ["INCEPTION_METRICS", "NATIVE_METRICS", "PIXEL_METRICS", "default_metrics",
           "describe", "direction_values", "inception_refusal", "is_photo", "is_plain_8bit",
           "named", "training_values"]

#: The scores that run the Inception network.
INCEPTION_METRICS = ("fid", "kid")
#: The scores that compare each translation with its ground truth (paired data only).
PIXEL_METRICS = ("mae", "mse", "psnr", "ssim")
#: What a run in native units computes by default on paired data.
NATIVE_METRICS = PIXEL_METRICS


def is_plain_8bit(values: DomainValues | None) -> bool:
    """Whether a domain is 8-bit data in 0..255 (``None``: a checkpoint made before value
    ranges, which trained 8-bit images), evaluated exactly as before value ranges existed."""
    return values is None or (values.dtype == "uint8" and values.range.is_8bit)


def is_photo(values: DomainValues | None) -> bool:
    """Whether FID and KID can score images of this domain: 8-bit, 1 or 3 channels (or 4,
    whose alpha channel is dropped, as for 8-bit runs always)."""
    return values is None or (values.dtype == "uint8" and values.channels in (1, 3, 4))


def describe(values: DomainValues | None) -> str:
    """``3-band uint8``, ``6-band float32``: a domain's bands and sample type, for messages."""
    if values is None:
        return "8-bit"
    return f"{values.channels}-band {values.dtype}"


def named(metrics: Iterable[str]) -> str:
    """``FID``, ``FID and KID``, ``MAE, MSE and PSNR``: metric names for a sentence."""
    names = [m.upper() for m in metrics]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def inception_refusal(wanted: Iterable[str], input_values: DomainValues | None,
                      output_values: DomainValues | None, paired: bool | None = None
                      ) -> str | None:
    """Why FID or KID among ``wanted`` cannot score the translations into ``output_values``
    (one line), or None when they can or are not wanted. ``paired`` (when known) decides
    whether the pixel scores are suggested instead."""
    asked = [m for m in INCEPTION_METRICS if m in set(wanted)]
    if not asked or is_photo(output_values):
        return None
    into = describe(output_values)
    what = describe(input_values)
    translates = f"{what} images" if what == into else f"{what} images into {into} images"
    instead = (": use --metrics " + ",".join(PIXEL_METRICS)) if paired is not False else \
        " (the pixel scores need paired data)"
    return (f"{named(asked)} {'needs' if len(asked) == 1 else 'need'} 1- or 3-channel 8-bit "
            f"photos; this run translates {translates}{instead}")


def default_metrics(paired: bool, input_values: DomainValues | None,
                    output_values: DomainValues | None) -> list[str]:
    """The scores an evaluation computes when none are asked for: on 8-bit runs FID and KID,
    plus PSNR and SSIM on paired data, as always; on runs in native units FID and KID only
    when the translations are photos, plus MAE, MSE, PSNR and SSIM on paired data.

    Raises:
        EvaluationError: no score applies (unpaired data that is not photos).
    """
    if is_plain_8bit(input_values) and is_plain_8bit(output_values):
        return ["fid", "kid", *(["psnr", "ssim"] if paired else [])]
    chosen = [*(INCEPTION_METRICS if is_photo(output_values) else ()),
              *(NATIVE_METRICS if paired else ())]
    if not chosen:
        raise EvaluationError(
            f"no score applies to this run: FID and KID need 1- or 3-channel 8-bit photos (it "
            f"translates into {describe(output_values)} images), and "
            f"{named(PIXEL_METRICS)} need paired data (ground truth for each input)")
    return chosen


def direction_values(values: dict[str, DomainValues] | None, direction: str
                     ) -> tuple[DomainValues | None, DomainValues | None]:
    """The values of the domain read and the domain written by the ``direction`` generator,
    from a dataset's (or checkpoint's) per-domain ``values`` (``A`` the recipe's input)."""
    if not values or not {"A", "B"} <= values.keys():
        return None, None
    return (values["A"], values["B"]) if direction == "AtoB" else (values["B"], values["A"])


def training_values(recipe: Recipe, registry: Components) -> dict[str, DomainValues] | None:
    """What the recipe's training data says of each domain's values (the ``values`` its
    checkpoints will hold; an ``"auto"`` range comes from the training split, cached), or
    None for a dataset that says nothing (plugin datasets: taken for 8-bit)."""
    from imtrans.core.observer import TrainingObserver
    from imtrans.data.build import build_dataset

    dataset, _ = build_dataset(recipe, registry, TrainingObserver())
    values: Any = getattr(dataset, "values", None)
    if not isinstance(values, dict) or not all(isinstance(v, DomainValues)
                                               for v in values.values()):
        return None
    return dict(values)
