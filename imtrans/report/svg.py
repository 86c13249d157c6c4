"""Small line charts as inline SVG: ticks at round numbers, light grid, one or more curves.

The report must open offline and from ``file://``, so charts are plain SVG markup written here
rather than a plotting library: they show without JavaScript. The page script
(:mod:`imtrans.report.script`) adds hover values and smoothing on top, drawing into the same
plot area from :data:`GEOMETRY` and each chart's :class:`Axes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from imtrans.report.data import Series, downsample

__all__ = ["GEOMETRY", "PALETTE", "Axes", "Line", "chart_svg", "format_number", "line_chart",
           "nice_ticks"]

#: Colours of successive charts (colour-blind friendly, readable on white).
PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777",
           "#4b5563")

_WIDTH, _HEIGHT = 420, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 16, 34, 36
_MARKERS_UP_TO = 40  # points; beyond this, dots would hide the line

#: The chart size and plot margins in SVG units (the viewBox), for the page script.
GEOMETRY = {"width": _WIDTH, "height": _HEIGHT, "left": _LEFT, "right": _RIGHT, "top": _TOP,
            "bottom": _BOTTOM}


@dataclass(frozen=True)
class Line:
    """One curve of a chart: its label (a run's name on a comparison page), points, colour."""

    label: str
    series: Series
    colour: str


@dataclass(frozen=True)
class Axes:
    """The step range (x) and value range (y) a chart maps onto its plot area."""

    x0: float
    x1: float
    y0: float
    y1: float


def nice_ticks(low: float, high: float, count: int = 5, min_step: float = 0.0) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering ``[low, high]``.

    The first tick is at or below ``low`` and the last at or above ``high``, so the ticks
    also give the axis range. Ticks are at least ``min_step`` apart (1 for steps).

    Example:
        >>> nice_ticks(0.3, 9.1)
        [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    """
    if not high > low:
        spread = max(abs(low) * 0.1, min_step) or 1.0
        low, high = low - spread, high + spread
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    candidates = [m * magnitude for m in (1, 2, 2.5, 5, 10)]
    if min_step:  # whole multiples only: no tick at step 2.5
        candidates = [c for c in candidates
                      if c >= min_step and abs(c / min_step - round(c / min_step)) < 1e-9]
        candidates = candidates or [min_step]
    step = next((c for c in candidates if (high - low) / c <= count), candidates[-1])
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    last = max(last, first + 1)  # an axis needs two ticks, even for a constant near zero
    digits = max(0, 3 - math.floor(math.log10(step)))  # rounding noise off, tiny steps kept
    return [float(round(i * step, digits)) for i in range(first, last + 1)]


def format_number(value: float, step: float | None = None) -> str:
    """A short label for ``value``, as precise as the tick ``step`` needs (12k, 0.25, 2e-4)."""
    if value == 0:
        return "0"
    step = abs(step) if step else abs(value)
    if abs(value) >= 1e6 or step < 1e-3:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if abs(value) >= 10_000 and step >= 1000 and value == round(value):
        return f"{format_number(value / 1000, step / 1000)}k"
    decimals = 0
    while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    return f"{value:.{decimals}f}"


def line_chart(title: str, series: Series, colour: str = PALETTE[0], *,
               max_points: int = 1000, note: str = "") -> str:
    """An SVG chart of ``series`` over step, titled ``title``, with ``note`` at the top right.

    Long series are reduced to ``max_points`` bucket means, drawn over a light band from each
    bucket's minimum to maximum; short ones get a dot per point.
    """
    return chart_svg(title, [Line(title, series, colour)], max_points=max_points, note=note)[0]


def chart_svg(title: str, lines: Sequence[Line], *, max_points: int = 1000, note: str = "",
              index: int | None = None) -> tuple[str, Axes]:
    """An SVG chart of every line of ``lines`` (each with at least one point) on shared axes,
    and those axes.

    As :func:`line_chart`, one curve (and band) per line in its colour. ``index`` is set as
    ``data-chart`` on the ``<svg>`` (and each curve gets ``data-line``), so the page script
    finds the chart its data belongs to.
    """
    reduced = [downsample(line.series, max_points) for line in lines]
    x_ticks = nice_ticks(min(min(mean.steps) for mean, _, _ in reduced),
                         max(max(mean.steps) for mean, _, _ in reduced), min_step=1)
    y_ticks = nice_ticks(min(min(low.values) for _, low, _ in reduced),
                         max(max(high.values) for _, _, high in reduced))
    axes = Axes(x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1])
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(step: float) -> str:
        return f"{_LEFT + (step - axes.x0) / (axes.x1 - axes.x0) * plot_w:.1f}"

    def y(value: float) -> str:
        return f"{_TOP + (axes.y1 - value) / (axes.y1 - axes.y0) * plot_h:.1f}"

    bottom = _TOP + plot_h
    key = "" if index is None else f' data-chart="{index}"'
    parts = [f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img"{key} '
             f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<text class="chart-title" x="{_LEFT}" y="20">{escape(title)}</text>']
    if note:
        parts.append(f'<text class="chart-note" x="{_WIDTH - _RIGHT}" y="20" '
                     f'text-anchor="end">{escape(note)}</text>')
    x_step, y_step = x_ticks[1] - x_ticks[0], y_ticks[1] - y_ticks[0]
    for tick in y_ticks:
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y(tick)}" '
                     f'y2="{y(tick)}"/><text class="tick" x="{_LEFT - 6}" y="{y(tick)}" '
                     f'text-anchor="end" dominant-baseline="middle">'
                     f"{format_number(tick, y_step)}</text>")
    for tick in x_ticks:
        parts.append(f'<line class="grid" x1="{x(tick)}" x2="{x(tick)}" y1="{_TOP}" '
                     f'y2="{bottom}"/><text class="tick" x="{x(tick)}" y="{bottom + 15}" '
                     f'text-anchor="middle">{format_number(tick, x_step)}</text>')
    parts.append(f'<rect class="frame" x="{_LEFT}" y="{_TOP}" width="{plot_w}" '
                 f'height="{plot_h}"/>')
    parts.append(f'<text class="axis-label" x="{_WIDTH - _RIGHT}" y="{_HEIGHT - 3}" '
                 f'text-anchor="end">step</text>')
    for number, (line, (mean, low, high)) in enumerate(zip(lines, reduced, strict=True)):
        colour = escape(line.colour)
        if high is not mean:
            outline = [f"{x(s)},{y(v)}" for s, v in zip(high.steps, high.values, strict=True)]
            outline += [f"{x(s)},{y(v)}" for s, v in zip(reversed(low.steps),
                                                       reversed(low.values), strict=True)]
            parts.append(f'<polygon class="band" fill="{colour}" '
                         f'points="{" ".join(outline)}"/>')
        points = " ".join(f"{x(s)},{y(v)}" for s, v in zip(mean.steps, mean.values, strict=True))
        parts.append(f'<polyline class="line" stroke="{colour}" data-line="{number}" '
                     f'points="{points}"/>')
        if len(mean.values) <= _MARKERS_UP_TO:
            parts.extend(f'<circle class="dot" fill="{colour}" cx="{x(s)}" cy="{y(v)}" '
                         'r="2.6"/>' for s, v in zip(mean.steps, mean.values, strict=True))
    parts.append("</svg>")
    return "".join(parts), axes
