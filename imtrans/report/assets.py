"""The report's inline style sheet and its one small script (the page loads nothing else)."""

from __future__ import annotations

__all__ = ["SCRIPT", "STYLE"]

STYLE = """
:root { --ink: #111827; --muted: #6b7280; --line: #e5e7eb; --card: #ffffff; --bg: #f5f6f8;
        --accent: #2563eb; --best: #b45309; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); line-height: 1.45;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
       Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 0 20px 48px; }
header.top { background: #1f2937; color: #f9fafb; padding: 18px 20px 12px; }
header.top .inner { max-width: 1240px; margin: 0 auto; }
header.top h1 { margin: 0 0 4px; font-size: 22px; font-weight: 650; }
header.top .generated { color: #d1d5db; font-size: 13px; }
nav { margin-top: 10px; display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 14px; }
nav a { color: #93c5fd; text-decoration: none; }
nav a:hover { text-decoration: underline; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
          margin-top: 20px; padding: 16px 20px 20px; }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 18px 0 8px; color: #374151; }
p.hint, p.empty { color: var(--muted); font-size: 14px; margin: 4px 0 10px; }
p.empty { font-style: italic; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
               letter-spacing: .04em; }
.card .value { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums;
               overflow-wrap: anywhere; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr));
          gap: 12px; }
svg.chart { width: 100%; height: auto; display: block; background: #fff;
            border: 1px solid var(--line); border-radius: 8px;
            font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
svg.chart .chart-title { font-size: 14px; font-weight: 600; fill: var(--ink); }
svg.chart .chart-note { font-size: 12px; fill: var(--muted); }
svg.chart .tick, svg.chart .axis-label { font-size: 11px; fill: var(--muted); }
svg.chart .grid { stroke: #eef0f3; stroke-width: 1; }
svg.chart .frame { fill: none; stroke: #d1d5db; stroke-width: 1; }
svg.chart .line { fill: none; stroke-width: 1.8; stroke-linejoin: round; stroke-linecap: round; }
svg.chart .band { opacity: .18; stroke: none; }
table { border-collapse: collapse; font-size: 14px; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { color: #374151; font-weight: 600; background: #f9fafb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.compact { width: auto; min-width: 50%; }
.table-scroll { max-width: 100%; overflow-x: auto; container-type: inline-size; }
table.results th.num { text-align: right; }
table.results td.file { overflow-wrap: anywhere; min-width: 10em; }
table.results tr.scores:not(:last-child) td { border-bottom: none; }
table.results tr.details td { padding-top: 0; overflow-wrap: anywhere; }
/* Of no width of its own, the warnings and protocol neither widen the table nor squeeze a
   column: they take the width the scores leave and wrap in it. On a screen too narrow for the
   scores, where the table scrolls, they keep to the visible width and stay in view. */
table.results .details-body { width: 0; min-width: min(100%, 100cqw - 20px);
                              position: sticky; left: 10px; }
ul.warnings { list-style: none; margin: 0 0 4px; padding: 0; color: #92400e; font-size: 13px; }
ul.warnings li { margin: 2px 0; }
details.protocol { font-size: 13px; color: #374151; }
details.protocol summary { color: var(--muted); cursor: pointer; }
dl.protocol { display: grid; grid-template-columns: max-content minmax(0, 1fr);
              gap: 2px 12px; margin: 4px 0; }
dl.protocol dt { color: var(--muted); }
dl.protocol dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }
tr.is-best td { background: #fffbeb; }
tr.is-last td { background: #eff6ff; }
code, pre, td.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
                     font-size: 13px; }
pre { background: #f8fafc; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px;
      overflow: auto; max-height: 560px; margin: 0; }
.badge { display: inline-block; font-size: 11px; font-weight: 700; letter-spacing: .04em;
         border-radius: 999px; padding: 1px 8px; margin-left: 6px; color: #fff;
         vertical-align: 1px; }
.badge.last { background: var(--accent); }
.badge.best { background: var(--best); }
.callouts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr));
            gap: 12px; margin-bottom: 14px; }
.callout { border-radius: 8px; padding: 10px 14px; border: 1px solid; }
.callout.last { border-color: #bfdbfe; background: #eff6ff; }
.callout.best { border-color: #fde68a; background: #fffbeb; }
.callout .title { font-weight: 650; margin-bottom: 4px; }
.callout .caveat { color: #92400e; font-size: 13px; margin-top: 6px; }
.samples { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 8px;
         background: #fafafa; max-width: 100%; min-width: 200px; }
.sample-grid { max-width: 100%; margin: 0 auto; }
.sample-grid img { width: 100%; }
.grid-labels { display: grid; align-items: end; margin-bottom: 4px; }
.grid-labels span { font-size: 12px; font-weight: 600; line-height: 1.2; color: #374151;
                    text-align: center; padding: 0 2px; overflow-wrap: anywhere; }
svg.chart .line.smooth { stroke-width: 2; }
svg.chart[data-smoothed] .line:not(.smooth), svg.chart[data-smoothed] .dot { opacity: .3; }
svg.chart .cursor { stroke: #6b7280; stroke-width: 1; stroke-dasharray: 3 3; }
svg.chart .hover-dot { stroke: #fff; stroke-width: 1.5; }
svg.chart .tip { fill: #111827; opacity: .9; }
svg.chart .tip-text { font-size: 11px; fill: #f9fafb; font-variant-numeric: tabular-nums; }
.smoothing { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 10px;
             font-size: 14px; margin: 0 0 12px; }
.smoothing label { font-weight: 600; }
.smoothing input { width: 220px; }
.smoothing output { font-variant-numeric: tabular-nums; min-width: 2.5em; }
.smoothing .hint { color: var(--muted); font-size: 13px; }
.live { display: inline-block; font-size: 11px; font-weight: 700; letter-spacing: .04em;
        border-radius: 999px; padding: 0 7px; background: #16a34a; color: #fff; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 4px 0 12px;
          font-size: 14px; }
.legend .swatch { display: inline-block; width: 14px; height: 4px; border-radius: 2px;
                  vertical-align: middle; margin-right: 6px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto;
             background: #e5e7eb; }
figure img.pixelated { image-rendering: pixelated; }
figcaption { font-size: 13px; color: #374151; margin-top: 6px; text-align: center; }
.missing { color: #b91c1c; font-size: 13px; font-weight: 600; margin: 6px 0 0;
           overflow-wrap: anywhere; }
"""

# Marks each image loaded or broken (a browser test reads the marks) and puts a visible caption
# under broken ones. It runs in <head>: load and error events of images do not bubble, but
# listeners capturing on the document see every one, even those that fire before the page's
# load event. Lazy images not yet scrolled near stay "pending" until their own event.
SCRIPT = """
(function () {
  function mark(img, failed) {
    var ok = !failed && img.complete && img.naturalWidth > 0;
    img.setAttribute("data-state", ok ? "loaded" : "broken");
    var next = img.nextElementSibling;
    if (!ok && !(next && next.classList.contains("missing"))) {
      var note = document.createElement("p");
      note.className = "missing";
      note.textContent = "image missing: " + img.getAttribute("src");
      img.insertAdjacentElement("afterend", note);
    }
  }
  ["load", "error"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      if (event.target.tagName === "IMG") { mark(event.target, type === "error"); }
    }, true);
  });
  window.addEventListener("load", function () {
    document.querySelectorAll("img:not([data-state])").forEach(function (img) {
      if (img.complete && (img.naturalWidth > 0 || img.loading !== "lazy")) {
        mark(img, false);
      } else {
        img.setAttribute("data-state", "pending");
      }
    });
  });
})();
"""
