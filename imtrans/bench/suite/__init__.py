"""``imtrans bench --suite gpu``: the one-command GPU proof.

Speed (:func:`run_suite`): CycleGAN and pix2pix at batch 1 and at their best batch, each in
four speed modes, from generated JPEG folders through the real data pipeline, plus a
one-process DDP run, under a global deadline. Quality (:func:`run_quality`): pix2pix facades
at the paper's settings on the fast path, then FID/KID/PSNR/SSIM as ``imtrans eval`` scores.
See ``docs/training.md``, The GPU proof.
"""

from __future__ import annotations

from imtrans.bench.suite.plan import CASES, MODES, SIZES
from imtrans.bench.suite.quality import QualityOptions, quality_modes, run_quality
from imtrans.bench.suite.runner import Record, SuiteOptions, run_suite
from imtrans.bench.suite.summary import COLUMNS, summary_rows

__all__ = ["CASES", "COLUMNS", "MODES", "SIZES", "QualityOptions", "Record", "SuiteOptions",
           "quality_modes", "run_quality", "run_suite", "summary_rows"]
