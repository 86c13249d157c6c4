"""Report sections of tables and images: evaluation, samples, checkpoints, recipe, versions."""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import PurePath
from typing import Any

from imtrans.report.data import CheckpointEntry, RunData, Sample
from imtrans.report.numbers import format_score
from imtrans.report.results_table import results_table

__all__ = ["NOISY_SAMPLES_BELOW", "checkpoints", "environment", "evaluation", "last_checkpoint",
           "recipe", "samples", "select_samples"]

NEWEST_SAMPLES = 12
OLDER_SAMPLES = 12
_EAGER = 4  # the newest grids load at once; the rest only when scrolled near
_GRID_PADDING = 2  # pixels around each image of a grid (imtrans.training.sample_grid.save_grid)
_LABELLED_COLUMN = 96  # display pixels a column needs for a label such as "reconstructed A"
_COLUMNS = {"pix2pix": "input | output | target",
            "cyclegan": "input | output | reconstruction (output translated back)"}


def evaluation(data: RunData, charts: str) -> str:
    """Evaluation metrics over training (``eval`` records) and the ``eval/*.json`` results."""
    parts = ['<section id="evaluation"><h2>Evaluation</h2>']
    if not charts and not data.eval_results:
        parts.append('<p class="empty">no evaluation yet</p>')
    if charts:
        parts.append("<h3>During training</h3><p class=\"hint\">Scores on the evaluation "
                     "subset, one chart per metric.</p>" + charts)
    if data.eval_results:
        parts.append("<h3>Results (eval/*.json)</h3>" + results_table(data.eval_results))
    return "".join(parts) + "</section>"


def select_samples(found: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """The newest grids (newest first) and an evenly spaced choice of the older ones."""
    newest = found[::-1][:NEWEST_SAMPLES]
    older = found[:-NEWEST_SAMPLES] if len(found) > NEWEST_SAMPLES else []
    if len(older) > OLDER_SAMPLES:
        last = len(older) - 1
        older = [older[round(i * last / (OLDER_SAMPLES - 1))] for i in range(OLDER_SAMPLES)]
    return newest, older[::-1]


#: A run of fewer steps shows samples that look like noise (the transposed convolutions'
#: checkerboard) whatever the recipe; the papers train 200 epochs, tens of thousands of steps
#: even on a small dataset. The end-of-run summary calls such a run a smoke test.
NOISY_SAMPLES_BELOW = 1000


def samples(data: RunData) -> str:
    """The sample grids over time, newest first, linked by paths relative to the run, each
    headed by the labels of its columns."""
    parts = ['<section id="samples"><h2>Samples</h2>']
    if not data.samples:
        return parts[0] + '<p class="empty">no samples yet</p></section>'
    newest, older = select_samples(data.samples)
    shown = len(newest) + len(older)
    count = (f"all {shown}" if shown == len(data.samples) else
             f"the newest {len(newest)} and {len(older)} older ones spread evenly over the run")
    if any(s.columns for s in data.samples):
        columns = "its columns are labelled above it"
    else:  # grids written before labels existed (no step_N.json beside them)
        columns = "columns: " + _COLUMNS.get(data.trainer or "",
                                             "input | output | reconstruction or target")
    parts.append(f'<p class="hint">{len(data.samples)} sample grid(s) in samples/, showing '
                 f"{count}. Each row of a grid is one fixed image; {escape(columns)}. "
                 "Click a grid for full size.</p>")
    newest_step = max(sample.step for sample in data.samples)
    if newest_step < NOISY_SAMPLES_BELOW:
        parts.append(f'<p class="hint">Noise at step {newest_step} is expected: the '
                     "grids of a GAN look like noise (often a checkerboard) for its first "
                     "thousands of steps; the papers train for 200 epochs.</p>")
    parts.append(_figures(newest, eager=_EAGER))
    if older:
        parts.append("<h3>Earlier in the run</h3>" + _figures(older, eager=0))
    return "".join(parts) + "</section>"


def checkpoints(data: RunData) -> str:
    """The checkpoint files in step order, with the last one (the result) and the best-seen
    one marked."""
    parts = ['<section id="checkpoints"><h2>Checkpoints</h2>']
    last = last_checkpoint(data.checkpoints)
    best = data.best
    best_name = PurePath(str(best.get("checkpoint", ""))).name if best else None
    callouts = []
    if last is not None:
        where = f"step {last.step}" + ("" if last.epoch is None else
                                       f", at the end of epoch {last.epoch}")
        callouts.append(
            '<div class="callout last"><div class="title">Last checkpoint <span class="badge '
            f'last">LAST</span></div><code>{escape(last.name)}</code>, {where}: '
            "the result of this run.</div>")
    if best is not None:
        callouts.append(_best_callout(best, best_name, data.checkpoints))
    if callouts:
        parts.append(f'<div class="callouts">{"".join(callouts)}</div>')
    if not data.checkpoints:
        parts.append('<p class="empty">no checkpoints yet</p>')
    else:
        rows = "".join(_checkpoint_row(c, c is last, c.name == best_name, best)
                       for c in data.checkpoints)
        parts.append('<table class="compact checkpoints"><thead><tr><th>file</th><th>step</th>'
                     "<th>epoch</th><th>size</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    return "".join(parts) + "</section>"


def last_checkpoint(found: list[CheckpointEntry]) -> CheckpointEntry | None:
    """The checkpoint of the highest step (what resuming and ``imtrans translate`` take)."""
    stepped = [c for c in found if c.step is not None]
    return max(stepped, key=lambda c: c.step or 0) if stepped else None


def recipe(data: RunData) -> str:
    """The resolved recipe, verbatim."""
    body = (f"<pre>{escape(data.recipe_text)}</pre>" if data.recipe_text is not None
            else '<p class="empty">no recipe.toml yet</p>')
    return f'<section id="recipe"><h2>Recipe (resolved)</h2>{body}</section>'


def environment(data: RunData) -> str:
    """Versions of imtrans, torch, python and the plugins; device; git commit."""
    if not data.environment:
        body = '<p class="empty">no environment.json yet</p>'
    else:
        rows = "".join(f"<tr><th>{escape(str(key))}</th><td>{escape(_describe(value))}</td></tr>"
                       for key, value in data.environment.items())
        body = f'<table class="compact"><tbody>{rows}</tbody></table>'
    return f'<section id="environment"><h2>Environment</h2>{body}</section>'


def _figures(found: list[Sample], eager: int) -> str:
    figures = []
    for index, sample in enumerate(found):
        loading = "eager" if index < eager else "lazy"
        src = escape(sample.href)
        size, pixelated, width = _display_size(sample)
        image = (f'<a href="{src}"><img src="{src}"{size}{pixelated} loading="{loading}" '
                 f'alt="sample grid at step {sample.step}"></a>')
        if sample.columns:
            image = (f'<div class="sample-grid" style="width: {width}px">'
                     f"{_labels(sample)}{image}</div>")
        figures.append(f"<figure>{image}<figcaption>step {sample.step}</figcaption></figure>")
    return f'<div class="samples">{"".join(figures)}</div>'


def _display_size(sample: Sample) -> tuple[str, str, int]:
    """The ``width``/``height`` attributes, the pixelated class and the display width."""
    if not sample.size:
        return "", "", _LABELLED_COLUMN * max(1, len(sample.columns or ()))
    width, height = sample.size
    if sample.columns:
        # Enlarged by a whole factor until each column is wide enough for its label.
        cell = max(1.0, (width - _GRID_PADDING) / len(sample.columns))
        scale = max(1, min(4, math.ceil(_LABELLED_COLUMN / cell)))
    else:  # tiny grids (32 px images) are enlarged by a whole factor
        scale = max(1, min(4, 360 // width)) if width < 300 else 1
    pixelated = ' class="pixelated"' if scale > 1 else ""  # crisp pixels when enlarged
    return f' width="{width * scale}" height="{height * scale}"', pixelated, width * scale


def _labels(sample: Sample) -> str:
    """The header row of a grid: one label over each column, in the grid's proportions."""
    columns = sample.columns or []
    width = sample.size[0] if sample.size else 0
    # save_grid puts 2 px of padding left of every column: the labels start after the first.
    lead = f"padding-left: {100 * _GRID_PADDING / width:.3f}%; " if width > _GRID_PADDING else ""
    cells = "".join(f'<span title="{escape(c)}">{escape(c)}</span>' for c in columns)
    return (f'<div class="grid-labels" style="{lead}grid-template-columns: '
            f'repeat({len(columns)}, 1fr)">{cells}</div>')


def _best_callout(best: dict[str, Any], best_name: str | None,
                  found: list[CheckpointEntry]) -> str:
    metric = escape(str(best.get("metric", "the evaluation metric")))
    value = best.get("value")
    shown = escape(format_score(value))
    lower = best.get("lower_is_better")
    better = "" if lower is None else (" (lower is better)" if lower else " (higher is better)")
    where = f"step {escape(str(best.get('step', '?')))}"
    if best.get("epoch") is not None:
        where += f", epoch {escape(str(best['epoch']))}"
    missing = ("" if any(c.name == best_name for c in found)
               else " (file not found in checkpoints/)")
    return ('<div class="callout best"><div class="title">Best seen by '
            f'{metric} <span class="badge best">BEST</span></div>'
            f"<code>{escape(best_name or '?')}</code>{missing}: {metric} = {shown}{better} at "
            f"{where}.<div class=\"caveat\">Selected on the evaluation subset, so its score "
            "is optimistically biased: evaluate it on held-out data before comparing it "
            "with other runs. The last checkpoint is the run's result.</div></div>")


def _checkpoint_row(found: CheckpointEntry, is_last: bool, is_best: bool,
                    best: dict[str, Any] | None) -> str:
    badges = ('<span class="badge last">LAST</span>' if is_last else "") + (
        '<span class="badge best">BEST</span>' if is_best else "")
    classes = " ".join(name for name, on in (("is-last", is_last), ("is-best", is_best)) if on)
    row_class = f' class="{classes}"' if classes else ""
    # best.safetensors has no step in its name; best.json says which step it was saved at.
    step: Any = found.step
    epoch = "" if found.epoch is None else f"{found.epoch} (end)"
    if step is None and is_best and best:
        step = best.get("step")
        epoch = "" if best.get("epoch") is None else str(best["epoch"])
    shown = "" if step is None else escape(str(step))
    return (f'<tr{row_class}><td class="mono">{escape(found.name)}{badges}</td>'
            f'<td class="num">{shown}</td><td class="num">{escape(epoch)}</td>'
            f'<td class="num">{_format_bytes(found.bytes)}</td></tr>')


def _describe(value: Any) -> str:
    """One line for a JSON value: plugin tables as 'name version', dicts as key=value."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(
            f"{k} {v.get('version', '')}".strip() if isinstance(v, dict) and "version" in v
            else f"{k}={json.dumps(v) if isinstance(v, dict | list) else v}"
            for k, v in value.items())
    return str(value)


def _format_bytes(count: int) -> str:
    size, units = float(count), ["B", "KiB", "MiB", "GiB", "TiB"]
    while size >= 1024 and len(units) > 1:
        size /= 1024
        units.pop(0)
    return f"{size:.0f} {units[0]}" if units[0] == "B" or size >= 10 else f"{size:.1f} {units[0]}"
