"""Evaluating trained generators: FID and KID with the standard Inception, PSNR and SSIM."""

from __future__ import annotations

from imtrans.evaluation.evaluate import METRICS, EvalResult, Evaluator, write_result
from imtrans.evaluation.inception import download_inception, find_inception

__all__ = ["METRICS", "EvalResult", "Evaluator", "download_inception", "find_inception",
           "write_result"]
