"""The comparison page: several runs' curves overlaid, one colour per run, and what differs.

Each chart holds one curve per run that logged that value (a loss term, images/s, the learning
rate, an evaluation metric); the legend names the runs in their colours and links each to its
own ``report.html``. The recipe keys whose values differ between the runs are listed, since
they are what the comparison is about.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from statistics import median
from typing import Any

from imtrans.report.charts import ChartBook
from imtrans.report.data import RunData, Series
from imtrans.report.layout import document, freshness, smoothing_control
from imtrans.report.numbers import format_score
from imtrans.report.sections import last_checkpoint
from imtrans.report.svg import PALETTE, Line

__all__ = ["ComparedRun", "recipe_differences", "render_comparison"]

_NAV = (("runs", "Runs"), ("losses", "Losses"), ("speed", "Speed and learning rate"),
        ("evaluation", "Evaluation"), ("differences", "Recipe differences"))
_MAX_DIFFERENCES = 200  # rows; runs of different methods differ in almost every key


@dataclass(frozen=True)
class ComparedRun:
    """One run of a comparison: its label in the legend, its data, and a link to its report
    (relative to the comparison page; None when it has none yet)."""

    label: str
    data: RunData
    report_href: str | None = None


def render_comparison(runs: Sequence[ComparedRun], generated: datetime) -> str:
    """The whole comparison page of ``runs`` (in legend order), stamped with ``generated``."""
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(runs))]
    book = ChartBook()
    nav = "".join(f'<a href="#{key}">{label}</a>' for key, label in _NAV)
    body = [
        '<header class="top"><div class="inner">',
        f"<h1>Comparing {len(runs)} runs</h1>",
        f'<div class="generated">{freshness(generated, live=False)}</div>',
        f"<nav>{nav}</nav></div></header><main>",
        _runs(runs, colours),
        _overlaid("losses", "Losses", runs, colours, book, lambda d: d.losses, smooth=True,
                  empty="no run has a training record yet"),
        _overlaid("speed", "Speed and learning rate", runs, colours, book,
                  lambda d: {"images/s": d.images_per_sec, "learning rate": d.lr},
                  empty="no run has a training record yet"),
        _overlaid("evaluation", "Evaluation", runs, colours, book, lambda d: d.evals,
                  empty="no run has evaluation records"),
        _differences(runs),
        "</main>",
    ]
    return document(f"Comparing {len(runs)} runs · imtrans report", "\n".join(body), book)


def _legend(runs: Sequence[ComparedRun], colours: list[str]) -> str:
    entries = []
    for run, colour in zip(runs, colours, strict=True):
        name = escape(run.label)
        if run.report_href is not None:
            name = f'<a href="{escape(run.report_href)}">{name}</a>'
        entries.append(f'<span class="legend-entry"><span class="swatch" '
                       f'style="background: {colour}"></span>{name}</span>')
    return f'<div class="legend">{"".join(entries)}</div>'


def _runs(runs: Sequence[ComparedRun], colours: list[str]) -> str:
    head = ("run", "trainer", "step", "epoch", "images/s (recent median)", "last checkpoint",
            "best seen")
    rows = []
    for run, colour in zip(runs, colours, strict=True):
        data = run.data
        recent = data.images_per_sec.values[-20:]
        last = last_checkpoint(data.checkpoints)
        best = data.best
        best_text = "—"
        if best is not None:
            value = best.get("value")
            shown = format_score(value)
            best_text = f"{best.get('metric', '?')} = {shown} at step {best.get('step', '?')}"
        cells = [f'<span class="swatch" style="background: {colour}"></span>'
                 f"{escape(run.label)}", escape(data.trainer or "—"),
                 _dash(data.last_step), _dash(data.last_epoch),
                 f"{median(recent):.3g}" if recent else "—",
                 escape(last.name) if last else "—", escape(best_text)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (f'<section id="runs"><h2>Runs</h2>{_legend(runs, colours)}'
            f'<table class="legend-table"><thead><tr>{header}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></section>")


def _overlaid(key: str, heading: str, runs: Sequence[ComparedRun], colours: list[str],
              book: ChartBook, pick: Callable[[RunData], dict[str, Series]], *, empty: str,
              smooth: bool = False) -> str:
    """One chart per name that ``pick(run data)`` gives (a dict of series), one line per run."""
    by_name: dict[str, list[Line]] = {}
    for run, colour in zip(runs, colours, strict=True):
        for name, series in pick(run.data).items():
            if series.values:
                by_name.setdefault(name, []).append(Line(run.label, series, colour))
    charts = [book.chart(name, lines, smooth=smooth,
                         note=f"{len(lines)} of {len(runs)} runs" if len(lines) < len(runs)
                         else "") for name, lines in by_name.items()]
    parts = [f'<section id="{key}"><h2>{escape(heading)}</h2>']
    if not charts:
        parts.append(f'<p class="empty">{escape(empty)}</p>')
    else:
        if smooth:
            parts.append(smoothing_control())
        parts.append(_legend(runs, colours))
        parts.append(f'<div class="charts">{"".join(charts)}</div>')
    return "".join(parts) + "</section>"


def recipe_differences(recipes: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The dotted keys whose values are not the same in every recipe, with each recipe's value
    (None where a recipe lacks the key), in sorted key order.

    Example:
        >>> recipe_differences([{"optim": {"lr": 2e-4, "beta1": 0.5}}, {"optim": {"lr": 1e-4,
        ...                     "beta1": 0.5}}])
        {'optim.lr': [0.0002, 0.0001]}
    """
    flat = [_flatten(r) for r in recipes]
    keys = sorted(set().union(*flat)) if flat else []
    return {k: [f.get(k) for f in flat] for k in keys
            if any(f.get(k) != flat[0].get(k) for f in flat[1:])}


def _differences(runs: Sequence[ComparedRun]) -> str:
    differing = recipe_differences([run.data.recipe for run in runs])
    parts = ['<section id="differences"><h2>Recipe differences</h2>']
    if not differing:
        parts.append('<p class="empty">the recipes agree in every key</p>')
        return "".join(parts) + "</section>"
    shown = list(differing.items())[:_MAX_DIFFERENCES]
    if len(differing) > len(shown):
        parts.append(f'<p class="hint">the first {len(shown)} of {len(differing)} keys that '
                     "differ</p>")
    header = "".join(f"<th>{escape(run.label)}</th>" for run in runs)
    rows = "".join(f'<tr><td class="mono">{escape(key)}</td>'
                   + "".join(f'<td class="mono">{escape(_value(v))}</td>' for v in values)
                   + "</tr>" for key, values in shown)
    parts.append(f"<table><thead><tr><th>key</th>{header}</tr></thead><tbody>{rows}</tbody>"
                 "</table>")
    return "".join(parts) + "</section>"


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _value(value: Any) -> str:
    """A recipe value as TOML would write it (``true``, ``"unet"``); a missing key as a dash."""
    return "—" if value is None else json.dumps(value, default=str)


def _dash(value: object) -> str:
    return "—" if value is None else escape(str(value))
