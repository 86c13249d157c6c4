"""The report's table of evaluation results (``eval/*.json``): scores first, then what was
scored, with each result's warnings and protocol on a row of their own below its scores.

The protocol (data, image counts, Inception weights, KID settings...) runs to a thousand
characters with paths and digests that have no space to break at: as a column it set the
table's width, pushed the scores off the page and stretched each row into a blank band. Here
it sits, wrapped, in a ``<details>`` under the scores, its summary naming what decides
comparability (the image count and size, the generator's mode); the warnings are a wrapped list
beside it, never cut. The table takes the width of its card; only on a narrow screen, when the
scores alone do not fit, it scrolls inside the card (``.table-scroll``).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from imtrans.report.numbers import format_spread

__all__ = ["METRIC_ORDER", "results_table"]

#: The scores' columns in this order, any other metric after them by name.
METRIC_ORDER = ("fid", "kid", "mae", "mse", "psnr", "ssim")
#: What was scored, after the scores.
_SUBJECT = ("step", "epoch", "split", "direction")
#: A metric ``<name>_std`` is the spread of ``<name>``: shown with it as ``mean ± spread``.
_SPREAD = "_std"


def results_table(results: list[tuple[str, dict[str, Any] | None]]) -> str:
    """The table of ``results``: (file name, its JSON object or None when unreadable)."""
    metrics = _metric_columns(results)
    head = ["result", *metrics, *_SUBJECT]
    header = "".join(f'<th class="num">{escape(h)}</th>' if h in metrics else
                     f"<th>{escape(h)}</th>" for h in head)
    groups = [_result_rows(name, result, metrics, len(head)) for name, result in results]
    return (f'<div class="table-scroll"><table class="results"><thead><tr>{header}</tr>'
            f"</thead>{''.join(groups)}</table></div>")


def _scores(result: dict[str, Any] | None) -> dict[str, Any]:
    found = (result or {}).get("metrics")
    return found if isinstance(found, dict) else {}


def _metric_columns(results: list[tuple[str, dict[str, Any] | None]]) -> list[str]:
    names: list[str] = []
    for _, result in results:
        names += [key for key in _scores(result) if key not in names]
    # kid_std goes with kid; a spread without its mean keeps a column of its own.
    shown = [key for key in names
             if not (key.endswith(_SPREAD) and key.removesuffix(_SPREAD) in names)]
    return sorted(shown, key=lambda k: (METRIC_ORDER.index(k) if k in METRIC_ORDER else 99, k))


def _result_rows(name: str, result: dict[str, Any] | None, metrics: list[str],
                 width: int) -> str:
    """One ``<tbody>`` per result: its scores, then its warnings and protocol."""
    file = f'<td class="mono file">{escape(name)}</td>'
    if result is None:
        return (f'<tbody class="result"><tr class="scores">{file}<td colspan="{width - 1}">'
                "unreadable (not a JSON object)</td></tr></tbody>")
    scores = _scores(result)
    cells = [file]
    for key in metrics:
        text = format_spread(scores.get(key), scores.get(key + _SPREAD))
        cells.append(f'<td class="num">{escape(text)}</td>')
    cells += [f"<td>{escape(_describe(result.get(key)))}</td>" for key in _SUBJECT]
    details = _warnings(result.get("warnings")) + _protocol(result)
    return (f'<tbody class="result"><tr class="scores">{"".join(cells)}</tr>'
            f'<tr class="details"><td colspan="{width}"><div class="details-body">{details}'
            "</div></td></tr></tbody>")


def _warnings(found: Any) -> str:
    if not isinstance(found, list) or not found:  # few images, non-standard Inception, ...
        return ""
    items = "".join(f"<li>warning: {escape(str(w))}</li>" for w in found)
    return f'<ul class="warnings">{items}</ul>'


def _protocol(result: dict[str, Any]) -> str:
    """The checkpoint's path and the protocol, folded under a one-line summary."""
    protocol = result.get("protocol")
    entries = {"checkpoint": result.get("checkpoint")} | (
        protocol if isinstance(protocol, dict) else {"protocol": protocol})
    gist = _gist(protocol) if isinstance(protocol, dict) else ""
    summary = "protocol" + (f": {escape(gist)}" if gist else "")
    return (f'<details class="protocol"><summary>{summary}</summary>'
            f"{_entries(entries)}</details>")


def _gist(protocol: dict[str, Any]) -> str:
    """What decides whether two results compare: image counts and size, generation."""
    parts = []
    images = protocol.get("images")
    if isinstance(images, dict) and "generated" in images:
        generated, real = images.get("generated"), images.get("real", images.get("generated"))
        parts.append(f"{generated} images" if generated == real else
                     f"{generated} generated and {real} real images")
        if images.get("skipped"):
            parts.append(f"{images['skipped']} skipped")
    elif isinstance(images, int) and not isinstance(images, bool):
        parts.append(f"{images} images")
    if protocol.get("image_size") is not None:
        parts.append(f"{protocol['image_size']} px")
    generation = protocol.get("generation")
    if isinstance(generation, dict):
        parts += [f"{key} {value}" for key, value in generation.items() if value is not None]
    inception = protocol.get("inception")
    if isinstance(inception, dict) and inception.get("standard") is False:
        parts.append("non-standard Inception")
    return ", ".join(str(p) for p in parts)


def _entries(values: dict[str, Any]) -> str:
    """``values`` as a definition list, a dict inside it as a nested one."""
    rows = []
    for key, value in values.items():
        shown = (_entries(value) if isinstance(value, dict) and value
                 else escape(_describe(value)))
        rows.append(f"<dt>{escape(str(key))}</dt><dd>{shown}</dd>")
    return f'<dl class="protocol">{"".join(rows)}</dl>'


def _describe(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict | list | bool):  # as the file writes it: true, [1, 2]
        return json.dumps(value)
    return str(value)
