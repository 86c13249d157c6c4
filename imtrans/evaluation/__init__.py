"""Evaluating trained generators: FID and KID with the standard Inception, PSNR and SSIM."""

from __future__ import annotations

from imtrans.evaluation.caveats import MIN_IMAGES, small_sample_warnings
from imtrans.evaluation.evaluate import METRICS, EvalResult, Evaluator
from imtrans.evaluation.inception import download_inception, find_inception
from imtrans.evaluation.results import SavedResult, save_result, write_result

__all__ = ["METRICS", "MIN_IMAGES", "EvalResult", "Evaluator", "SavedResult",
           "download_inception", "find_inception", "save_result", "small_sample_warnings",
           "write_result"]
