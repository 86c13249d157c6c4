"""Evaluating a trained generator on a test split: translate, then score against real images.

FID and KID compare the translated test inputs with the real test images of the target domain
(8-bit photos only); MAE, MSE, PSNR and SSIM compare each translation with its ground truth
(paired data only). A run on 8-bit images is scored on ``uint8`` images, PSNR and SSIM on
[0, 1]; any other run in its native units, with the output domain's value range as PSNR's and
SSIM's data range (:mod:`imtrans.evaluation.native_units`). An :class:`Evaluator` holds the
test set and the real images' Inception features, so evaluating many checkpoints (or every few
epochs during training) extracts those once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from imtrans.core.components import Components
from imtrans.data.value_range import DomainValues
from imtrans.errors import EvaluationError
from imtrans.evaluation.caveats import degenerate_warnings, inception_warnings, standing_warnings
from imtrans.evaluation.inception import InceptionFeatures, find_inception
from imtrans.evaluation.native_units import (
    PIXEL_METRICS,
    default_metrics,
    inception_refusal,
    named,
)
from imtrans.evaluation.scores import (
    KID_SEED,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    fid_score,
    kid_score,
    mae_mse,
    psnr_ssim,
)
from imtrans.evaluation.testset import TestSet, load_test_set, test_split_of
from imtrans.inference.translator import Translator, to_uint8
from imtrans.recipe import Recipe

__all__ = ["METRICS", "EvalResult", "Evaluator"]

#: Every score an evaluation can give, and whether lower is better.
METRICS = {"fid": True, "kid": True, "mae": True, "mse": True, "psnr": False, "ssim": False}
#: PSNR of identical images is infinite; results cap it so they stay valid JSON numbers.
PSNR_CAP = 100.0


@dataclass
class EvalResult:
    """Scores of one generator on one test split, with the protocol that produced them and
    the warnings that go with them (scores on too few images, non-standard Inception weights,
    degenerate scores: see :mod:`imtrans.evaluation.caveats`)."""

    checkpoint: str | None
    step: int
    epoch: int | None
    split: str
    direction: str
    metrics: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)


def _rgb(images: Tensor) -> Tensor:
    """Inception takes 3 channels: gray is repeated, a 4th (alpha) channel dropped."""
    channels = images.shape[1]
    if channels == 1:
        return images.expand(-1, 3, -1, -1)
    if channels in (3, 4):
        return images[:, :3]
    raise EvaluationError(f"FID/KID need 1, 3 or 4 channel images, got {channels}")


def check_metrics(metrics: list[str] | None, paired: bool,
                  input_values: DomainValues | None = None,
                  output_values: DomainValues | None = None) -> list[str]:
    """The metrics to compute: ``metrics``, or by default those that apply to the data (see
    :func:`~imtrans.evaluation.native_units.default_metrics`: on 8-bit runs FID and KID, and
    PSNR and SSIM on paired data).

    Args:
        metrics: The metrics asked for (None: the default).
        paired: Whether the test data has ground truth for each input.
        input_values, output_values: The domains the generator reads and writes (None:
            8-bit images).

    Raises:
        EvaluationError: an unknown metric, a pixel score asked of unpaired data, FID or KID
            asked of translations that are not 8-bit photos, or no metric that applies.
    """
    wanted = metrics or default_metrics(paired, input_values, output_values)
    unknown = sorted(set(wanted) - set(METRICS))
    if unknown:
        raise EvaluationError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    pixel = [m for m in PIXEL_METRICS if m in wanted]
    if not paired and pixel:
        raise EvaluationError(f"{named(pixel)} need{'s' if len(pixel) == 1 else ''} paired "
                              "data (ground truth for each input)")
    refusal = inception_refusal(wanted, input_values, output_values, paired)
    if refusal:
        raise EvaluationError(refusal)
    return wanted


def _photos(images: Tensor) -> Tensor:
    """Images for the Inception network: ``uint8`` as they are; the native values of an
    8-bit domain (with another range than 0..255) rounded to its levels."""
    if images.dtype == torch.uint8:
        return images
    return images.round().clamp(0, 255).to(torch.uint8)


def to_native(images: Tensor, values: DomainValues | None) -> Tensor:
    """Generator output in [-1, 1] mapped to the native units of ``values`` (``float32``),
    rounded to whole levels for an integer type, as ``translate`` writes them; None: 8-bit
    levels 0..255."""
    if values is None:
        return to_uint8(images).float()
    native = values.range.denormalize(images)
    dtype = np.dtype(values.dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        native = native.round_().clamp_(float(info.min), float(info.max))
    return native


class Evaluator:
    """Scores generators on one test split of a recipe's data.

    Args:
        recipe: The recipe the generators were trained with.
        registry: Components (to build the test dataset).
        direction: ``AtoB`` or ``BtoA``.
        metrics: Which of :data:`METRICS` to compute (default: all that apply: FID and KID,
            plus PSNR and SSIM for paired data, on 8-bit runs; see :func:`check_metrics`).
        split, data_root, max_images: See :func:`~imtrans.evaluation.testset.load_test_set`.
        inception: The Inception weights (default: :func:`find_inception`'s search); only
            needed for FID and KID.
        trust_inception: Load them even when they are not the standard file (they run as
            code: set only from the user's own flag, never from a recipe); their scores are
            then marked non-standard. ``$IMTRANS_TRUST_INCEPTION=1`` does the same.
        device: Where the Inception network runs.
        input_values, output_values: The value ranges, types and bands of the domains the
            generator reads and writes (the checkpoint's ``values``, as
            :class:`~imtrans.inference.translator.Translator` holds them); None, or 8-bit in
            0..255 for both, scores on ``uint8`` images as always; else in native units.

    Raises:
        EvaluationError: unknown metrics, pixel scores on unpaired data, FID/KID of images
            that are not 8-bit photos, or Inception weights missing, refused (not the
            standard file and not trusted) or unloadable.
    """

    def __init__(self, recipe: Recipe, registry: Components, *, direction: str = "AtoB",
                 metrics: list[str] | None = None, split: str | None = None,
                 data_root: Path | str | None = None, max_images: int | None = None,
                 inception: Path | str | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 16, trust_inception: bool = False,
                 input_values: DomainValues | None = None,
                 output_values: DomainValues | None = None) -> None:
        self.direction = direction
        self.batch_size = batch_size
        # The metrics first: a refusal (FID of CT slices) comes before any image is read.
        _, _, paired = test_split_of(recipe, registry, split, data_root)
        check_metrics(metrics, paired, input_values, output_values)
        self.data = load_test_set(recipe, registry, direction=direction, split=split,
                                  data_root=data_root, max_images=max_images,
                                  input_values=input_values, output_values=output_values)
        wanted = check_metrics(metrics, self.data.paired, input_values, output_values)
        self.metrics = wanted
        self.features: InceptionFeatures | None = None
        self.real_features: Tensor | None = None
        self.inception_path: Path | None = None
        #: Warnings about the scores of the last :meth:`score` call (degenerate scores).
        self.score_warnings: list[str] = []
        if {"fid", "kid"} & set(wanted):
            self.inception_path = find_inception(inception)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's notice
                self.features = InceptionFeatures(self.inception_path, device,
                                                  trust=trust_inception)
            self.real_features = self.features(_rgb(_photos(self.data.targets)))

    @property
    def inception_warning(self) -> str | None:
        """What to say once, before any score, when the Inception weights are not the
        standard file (the user trusted them); None for the standard file or no FID/KID."""
        found = inception_warnings(self._inception_protocol())
        return found[0] if found else None

    @property
    def test_set(self) -> TestSet:
        """The images evaluated on."""
        return self.data

    @torch.no_grad()
    def translate(self, translator: Translator, seed: int = 0) -> Tensor:
        """The test inputs translated, seeded (dropout in paper mode): ``uint8`` for an 8-bit
        run, else ``float32`` in the output domain's native units (:func:`to_native`)."""
        torch.manual_seed(seed)
        outputs = []
        for chunk in self.data.inputs.split(self.batch_size):
            if self.data.native:  # already normalised with the input domain's range
                out = translator.translate_batch(chunk.to(translator.device))
                outputs.append(to_native(out, self.data.output_values).cpu())
                continue
            batch = chunk.to(translator.device).float() / 127.5 - 1
            outputs.append(to_uint8(translator.translate_batch(batch)).cpu())
        return torch.cat(outputs)

    def score(self, generated: Tensor) -> dict[str, float]:
        """Every chosen metric of ``generated`` (as :meth:`translate` gives them, one per test
        input); what is wrong with them, when something is (NaN, FID 0 between different
        images...), is left in :attr:`score_warnings` for :meth:`result`."""
        scores: dict[str, float] = {}
        fake: Tensor | None = None
        if self.features is not None and self.real_features is not None:
            fake = self.features(_rgb(_photos(generated)))
            if "fid" in self.metrics:
                scores["fid"] = fid_score(self.real_features, fake)
            if "kid" in self.metrics:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "saves all features"
                    mean, std, _ = kid_score(self.real_features, fake)
                scores |= {"kid": mean, "kid_std": std}
        if {"mae", "mse"} & set(self.metrics):
            mae, mse = mae_mse(generated, self.data.targets)
            scores |= {"mae": float(mae.mean()), "mse": float(mse.mean())}
        if {"psnr", "ssim"} & set(self.metrics):
            psnr, ssim = psnr_ssim(generated, self.data.targets, self._data_range)
            scores |= {"psnr": float(psnr.clamp(max=PSNR_CAP).mean()),
                       "ssim": float(ssim.mean())}
        chosen = {k: v for k, v in scores.items()
                  if k in self.metrics or (k == "kid_std" and "kid" in self.metrics)}
        self.score_warnings = degenerate_warnings(
            chosen, generated=generated, real=self.data.targets, fake_features=fake,
            real_features=self.real_features)
        return chosen

    @property
    def _data_range(self) -> tuple[float, float] | None:
        """PSNR's and SSIM's ``(low, high)`` in native units; None: ``uint8`` in 0..255."""
        values = self.data.output_values
        if not self.data.native:
            return None
        return (0.0, 255.0) if values is None else (values.range.low, values.range.high)

    @property
    def units(self) -> str | None:
        """What the pixel scores are in, for a line beside them: None for an 8-bit run (0..255
        levels, PSNR and SSIM on [0, 1], as always)."""
        if not self.data.native:
            return None
        low, high = self._data_range or (0.0, 255.0)
        values = self.data.output_values
        kind = f"{values.dtype}, " if values is not None else ""
        return (f"native units of the output domain ({kind}range [{low:g}, {high:g}]): MAE "
                f"and MSE in those units, PSNR and SSIM with data_range {high - low:g}")

    def evaluate(self, translator: Translator, *, seed: int = 0, epoch: int | None = None,
                 mode: str | None = None) -> EvalResult:
        """Translate the test inputs with ``translator`` and score them; ``mode`` (``paper``
        or ``eval``, as the translator was loaded) is recorded in the protocol."""
        generated = self.translate(translator, seed)
        return self.result(translator, self.score(generated), len(generated), epoch=epoch,
                           mode=mode, seed=seed)

    def result(self, translator: Translator, scores: dict[str, float], generated: int, *,
               epoch: int | None = None, mode: str | None = None,
               seed: int | None = None) -> EvalResult:
        """Scores of ``translator`` as a result record with the protocol and warnings (those
        the scores and protocol imply, and :attr:`score_warnings` of the :meth:`score` call
        that gave ``scores``); ``mode`` and ``seed`` are how the translations were made (see
        :meth:`protocol`)."""
        protocol = self.protocol(generated, mode=mode, seed=seed, weights=translator.weights)
        return EvalResult(
            checkpoint=str(translator.checkpoint) if translator.checkpoint else None,
            step=translator.step, epoch=translator.epoch if epoch is None else epoch,
            split=self.data.split, direction=self.direction, metrics=scores,
            warnings=standing_warnings(scores, protocol) + self.score_warnings,
            protocol=protocol)

    def protocol(self, generated: int, *, mode: str | None = None,
                 seed: int | None = None, weights: str = "raw") -> dict[str, Any]:
        """How the scores were computed, written beside them so they can be compared.

        ``generation`` holds the generator's ``mode`` and the dropout ``seed``: the same
        checkpoint gives other translations (and scores) when either changes; and, for the
        moving average of the weights (``train.ema``), ``"weights": "ema"``. The trained
        weights leave it out, so their results keep the protocol they had before averages
        existed (and merge with those files).
        """
        data = self.data
        described: dict[str, Any] = {
            "data_root": str(data.root), "split": data.split, "paired": data.paired,
            # Unusable files are left out, not replaced; their count changes what was scored.
            "images": {"generated": generated, "real": len(data.targets)}
                      | ({"skipped": len(data.skipped)} if data.skipped else {}),
            "image_size": data.size,
            "test_preprocessing": f"resize to {data.size}x{data.size}, no crop, no flip",
            "generation": {"mode": mode, "seed": seed}
                          | ({"weights": weights} if weights != "raw" else {}),
        }
        described |= self._inception_protocol()
        if "kid" in self.metrics:
            described["kid"] = {"kernel": "cubic polynomial, gamma 1/2048, coef 1",
                                "estimator": "unbiased MMD^2", "subsets": KID_SUBSETS,
                                "subset_size": min(KID_SUBSET_SIZE, generated,
                                                   len(data.targets)),
                                "seed": KID_SEED}
        if data.native:
            described["values"] = {"units": "native"} | {
                side: values.to_json() for side, values in
                (("input", data.input_values), ("output", data.output_values))
                if values is not None}
        if {"mae", "mse"} & set(self.metrics):
            low, high = self._data_range or (0.0, 255.0)
            described["mae_mse"] = "per image then averaged, " + (
                f"in the output domain's native units (range [{low:g}, {high:g}])"
                if data.native else "in 0..255 levels of the uint8 images")
        if {"psnr", "ssim"} & set(self.metrics):
            if data.native:
                low, high = self._data_range or (0.0, 255.0)
                described["psnr_ssim"] = (
                    f"kornia, per image then averaged, native units with data_range "
                    f"{high - low:g} (the output range [{low:g}, {high:g}]; computed on "
                    f"(x - low) / data_range), SSIM 11x11 Gaussian window, PSNR capped at "
                    f"{PSNR_CAP:g} dB")
            else:
                described["psnr_ssim"] = (f"kornia, per image then averaged, [0, 1] range, "
                                          f"SSIM 11x11 Gaussian window, PSNR capped at "
                                          f"{PSNR_CAP:g} dB")
        return described

    def _inception_protocol(self) -> dict[str, Any]:
        if self.features is None or self.inception_path is None:
            return {}
        # The digest of the bytes that were checked and loaded, not of the file as it is now.
        return {"inception": {
            "file": str(self.inception_path), "sha256": self.features.sha256,
            "standard": self.features.standard,
            "input": "uint8 RGB -> [0, 1] -> bilinear resize to 299 (align_corners=False, "
                     "no antialias) -> x * 2 - 1",
            "features": "pool3, 2048-d; FID statistics in float64 (torchmetrics)"}}

