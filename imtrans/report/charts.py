"""The charts of one page: drawn as SVG, with their data kept for the page script.

Every chart a page shows is made through one :class:`ChartBook`, which numbers the charts and
records, for each, its axes and its curves' points. :meth:`ChartBook.data_script` embeds that
record in the page as JSON (``<script type="application/json" id="chart-data">``), from which
the page script (:mod:`imtrans.report.script`) shows hover values and redraws the smoothed
curves, with no request to anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from imtrans.report.data import Series, downsample
from imtrans.report.svg import GEOMETRY, Line, chart_svg

__all__ = ["EMBEDDED_POINTS", "ChartBook"]

#: Points of each curve embedded for hovering and smoothing. Runs logging more are embedded as
#: this many bucket means: enough for the smoothing slider (the drawn curve has at most 1000
#: points) while a long run's page stays a few MB at most.
EMBEDDED_POINTS = 5000

_DIGITS = 6  # significant digits of embedded values: more only makes the page bigger


class ChartBook:
    """Draws the charts of a page and keeps the data the page script needs."""

    def __init__(self) -> None:
        self.charts: list[dict[str, Any]] = []

    def chart(self, title: str, lines: Sequence[Line], *, note: str = "",
              smooth: bool = False) -> str:
        """The SVG of a chart of ``lines`` (those without points are left out; none: "").

        Args:
            title: The chart's title.
            lines: Its curves (one per run on a comparison page).
            note: Text at the top right ("last 0.25").
            smooth: The page's smoothing slider applies (loss curves).
        """
        drawn = [line for line in lines if line.series.values]
        if not drawn:
            return ""
        svg, axes = chart_svg(title, drawn, note=note, index=len(self.charts))
        self.charts.append({
            "title": title, "smooth": smooth,
            "x0": axes.x0, "x1": axes.x1, "y0": axes.y0, "y1": axes.y1,
            "lines": [_embedded(line) for line in drawn],
        })
        return svg

    def data_script(self) -> str:
        """The ``<script type="application/json">`` element holding every chart's data."""
        payload = json.dumps({"geometry": GEOMETRY, "charts": self.charts},
                             separators=(",", ":"), allow_nan=False)
        # Inside <script>, "</script>" or "<!--" in a loss name would end or break the element:
        # JSON allows writing these characters as escapes, and JSON.parse reads them back.
        for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
            payload = payload.replace(char, escaped)
        return f'<script type="application/json" id="chart-data">{payload}</script>'


def _embedded(line: Line) -> dict[str, Any]:
    series: Series = downsample(line.series, EMBEDDED_POINTS)[0]
    return {"label": line.label, "colour": line.colour,
            "steps": [_compact(s) for s in series.steps],
            "values": [float(f"{v:.{_DIGITS}g}") for v in series.values]}


def _compact(step: float) -> float | int:
    """Whole steps as integers (``120``, not ``120.0``); bucket means keep one decimal."""
    return int(step) if step == int(step) else round(step, 1)
