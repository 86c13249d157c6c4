"""How the report writes scores (FID, KID, PSNR, SSIM, ...): one formatter for every table and
callout, so a score reads the same wherever it is shown.

A score has 4 significant digits in fixed-point notation (``437.4``, ``7.493``, ``0.2630``,
``0.3008``); a mean with a spread gives the spread the mean's decimals, so ``kid_std`` of
3.142e-16 (KID on a set no larger than its subset size) reads ``0.3008 ± <0.0001``, not
``0.3008 ± 3.142e-16``.

Example:
    >>> format_score(437.4279413675595), format_score(0.2629759396113877)
    ('437.4', '0.2630')
    >>> format_spread(0.4289, 0.01223), format_spread(0.30080000123, 3.142e-16)
    ('0.4289 ± 0.0122', '0.3008 ± <0.0001')
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SIGNIFICANT", "format_score", "format_spread"]

#: Significant digits of a score: FID 437.4, PSNR 7.493, SSIM 0.2630, KID 0.3008.
SIGNIFICANT = 4
#: Magnitudes shown in fixed-point notation; smaller or larger ones in scientific notation.
_FIXED = (1e-4, 1e6)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decimals(value: float) -> int | None:
    """Decimals that give ``value`` :data:`SIGNIFICANT` significant digits; None where it is
    written in scientific notation (not finite, tiny but not zero, or huge)."""
    if value == 0:
        return SIGNIFICANT - 1
    size = abs(value)
    if not math.isfinite(value) or not _FIXED[0] <= size < _FIXED[1]:
        return None
    exponent = math.floor(math.log10(size))
    decimals = max(0, SIGNIFICANT - 1 - exponent)
    if decimals and abs(round(value, decimals)) >= 10 ** (exponent + 1):
        decimals -= 1  # 9.99996 rounds up to 10.00, not 10.000
    return decimals


def format_score(value: Any) -> str:
    """``value`` with :data:`SIGNIFICANT` significant digits (``—`` for a missing one, text as
    it is, ``nan``/``inf`` as such)."""
    if value is None:
        return "—"
    if not _number(value):
        return str(value)
    decimals = _decimals(value)
    if decimals is None:
        return f"{value:.{SIGNIFICANT - 1}e}" if math.isfinite(value) else str(float(value))
    return f"{value:.{decimals}f}"


def format_spread(mean: Any, spread: Any) -> str:
    """``mean ± spread``, the spread rounded to the mean's decimals; a spread that rounds to
    zero there but is not zero reads ``<0.0001`` (one unit of the last decimal shown)."""
    shown = format_score(mean)
    if spread is None:
        return shown
    decimals = _decimals(mean) if _number(mean) else None
    if decimals is None or not _number(spread) or not math.isfinite(spread):
        return f"{shown} ± {format_score(spread)}"
    rounded = f"{spread:.{decimals}f}"
    if spread != 0 and float(rounded) == 0:
        rounded = f"<{10.0 ** -decimals:.{decimals}f}"
    return f"{shown} ± {rounded}"
