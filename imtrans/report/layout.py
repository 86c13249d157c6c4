"""The frame every report page shares: the document head, the live reload, the smoothing slider.

A page is one self-contained file: its style sheet, its scripts and its chart data are inline,
so it loads nothing from anywhere and works from ``file://``.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from imtrans.report.assets import SCRIPT, STYLE
from imtrans.report.charts import ChartBook
from imtrans.report.script import CHART_SCRIPT

__all__ = ["LIVE_REFRESH_SECONDS", "document", "freshness", "smoothing_control"]

#: How often a live page (of a run still training) reloads itself.
LIVE_REFRESH_SECONDS = 30

#: The smoothing weight a page opens with (TensorBoard's default), until the reader moves it.
DEFAULT_SMOOTHING = 0.6


def document(title: str, body: str, charts: ChartBook, *, live: bool = False) -> str:
    """The whole HTML page: ``body`` (already escaped markup) and the data of ``charts``.

    With ``live``, the page reloads itself every :data:`LIVE_REFRESH_SECONDS` seconds, so a
    browser tab left open follows a run that is still training.
    """
    refresh = (f'<meta http-equiv="refresh" content="{LIVE_REFRESH_SECONDS}">' if live else "")
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"{refresh}<title>{escape(title)}</title><style>{STYLE}</style>"
            f"<script>{SCRIPT}</script><script>{CHART_SCRIPT}</script></head>\n<body>\n"
            f"{body}\n{charts.data_script()}\n</body></html>\n")


def freshness(generated: datetime, *, live: bool) -> str:
    """The header line saying when the page was made and whether it reloads itself."""
    stamp = f"generated at {generated:%Y-%m-%d %H:%M:%S %Z}"
    if live:
        return (f'{stamp} · <span class="live">LIVE</span> training in progress: this page '
                f"reloads itself every {LIVE_REFRESH_SECONDS} s")
    return f"{stamp} · this page does not reload itself: rebuild or reload it for newer results"


def smoothing_control() -> str:
    """The slider that smooths the loss curves (applied in the browser by the chart script)."""
    return ('<div class="smoothing"><label for="smoothing">Smoothing</label>'
            f'<input type="range" id="smoothing" min="0" max="0.99" step="0.01" '
            f'value="{DEFAULT_SMOOTHING}"><output id="smoothing-value" for="smoothing">'
            f"{DEFAULT_SMOOTHING:.2f}</output><span class=\"hint\">exponential moving average "
            "as in TensorBoard (0: raw); hover a chart for values</span></div>")
