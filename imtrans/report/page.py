"""The report page: header, summary, curves and the sections of :mod:`imtrans.report.sections`.

Every string taken from the run directory (names, recipe, versions) goes through
:func:`html.escape`, since a recipe value or a plugin's loss name may hold ``<`` or ``&``.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from statistics import median

from imtrans.report import sections
from imtrans.report.charts import ChartBook
from imtrans.report.data import RunData, Series
from imtrans.report.layout import document, freshness, smoothing_control
from imtrans.report.svg import PALETTE, Line

__all__ = ["render_page"]

_NAV = (("summary", "Summary"), ("losses", "Losses"), ("speed", "Speed and learning rate"),
        ("evaluation", "Evaluation"), ("samples", "Samples"), ("checkpoints", "Checkpoints"),
        ("recipe", "Recipe"), ("environment", "Environment"))


def render_page(data: RunData, generated: datetime, *, live: bool = False) -> str:
    """The whole ``report.html`` of ``data`` as a string, stamped with ``generated``.

    ``live``: the run is still training, so the page reloads itself (see
    :func:`imtrans.report.layout.document`).
    """
    title = f"{data.name} · imtrans report"
    step = f"step {data.last_step}" if data.last_step is not None else "no training step yet"
    nav = "".join(f'<a href="#{key}">{label}</a>' for key, label in _NAV)
    book = ChartBook()
    body = [
        '<header class="top"><div class="inner">',
        f"<h1>{escape(data.name)}</h1>",
        f'<div class="generated">{step} · {freshness(generated, live=live)}</div>',
        f"<nav>{nav}</nav></div></header><main>",
        _summary(data), _losses(data, book), _speed(data, book),
        sections.evaluation(data, _charts(book, data.evals)),
        sections.samples(data), sections.checkpoints(data), sections.recipe(data),
        sections.environment(data), "</main>",
    ]
    return document(title, "\n".join(body), book, live=live)


def _summary(data: RunData) -> str:
    recent = data.images_per_sec.values[-20:]
    cards = [
        ("step", _or_dash(data.last_step)),
        ("epoch", _or_dash(data.last_epoch)),
        ("trainer", _or_dash(data.trainer)),
        ("images/s (recent median)", f"{median(recent):.3g}" if recent else "—"),
        ("learning rate", f"{data.lr.values[-1]:.3g}" if data.lr.values else "—"),
        ("samples", str(len(data.samples))),
        ("checkpoints", str(len(data.checkpoints))),
    ]
    html = "".join(f'<div class="card"><div class="label">{escape(label)}</div>'
                   f'<div class="value">{escape(value)}</div></div>' for label, value in cards)
    return f'<section id="summary"><h2>Summary</h2><div class="cards">{html}</div></section>'


def _losses(data: RunData, book: ChartBook) -> str:
    if not data.losses:
        return ('<section id="losses"><h2>Losses</h2>'
                '<p class="empty">no metrics yet: metrics.jsonl has no training record</p>'
                "</section>")
    hint = ("One chart per loss term, over the training step. Each point is the mean over a "
            "logging interval; long runs are drawn as bucket means over a band from each "
            "bucket's minimum to its maximum.")
    return (f'<section id="losses"><h2>Losses</h2><p class="hint">{hint}</p>'
            f"{smoothing_control()}{_charts(book, data.losses, smooth=True)}</section>")


def _speed(data: RunData, book: ChartBook) -> str:
    series = {"images/s": data.images_per_sec, "learning rate": data.lr}
    shown = {name: s for name, s in series.items() if s.values}
    if not shown:
        return ('<section id="speed"><h2>Speed and learning rate</h2>'
                '<p class="empty">no metrics yet</p></section>')
    return (f'<section id="speed"><h2>Speed and learning rate</h2>'
            f"{_charts(book, shown, offset=len(data.losses))}</section>")


def _charts(book: ChartBook, series: dict[str, Series], offset: int = 0,
            smooth: bool = False) -> str:
    """A grid of one chart per series, each titled by its name, with its last value noted
    (empty when no series has a point)."""
    charts = [book.chart(name, [Line(name, s, PALETTE[(offset + i) % len(PALETTE)])],
                         note=f"last {s.values[-1]:.4g}", smooth=smooth)
              for i, (name, s) in enumerate(series.items()) if s.values]
    if not charts:
        return ""
    return f'<div class="charts">{"".join(charts)}</div>'


def _or_dash(value: object) -> str:
    return "—" if value is None else str(value)
