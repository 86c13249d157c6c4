"""The report's chart script: hover values, the smoothing slider, and the scroll position kept
across the automatic reloads of a live page. Plain inline JavaScript, no library: the page
must work offline and from ``file://``.

It reads the JSON that :meth:`imtrans.report.charts.ChartBook.data_script` embeds (each chart's
axes and its curves' points) and draws into the SVG of :func:`imtrans.report.svg.chart_svg`:

- hover: a vertical line at the logged step nearest the pointer, a dot on each curve, and a
  box with the step and each curve's value (the smoothed value and the raw one when smoothing);
- smoothing: TensorBoard's exponential moving average with debiasing, weight 0 to 0.99, over
  the embedded points of the loss curves (charts marked ``smooth``); the raw curve stays
  faintly behind, and the weight is remembered (``localStorage``) across reloads.
"""

from __future__ import annotations

__all__ = ["CHART_SCRIPT"]

CHART_SCRIPT = """
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var DRAWN = 1000;  // points of a drawn curve, as many as the page's own SVG curves
  var SMOOTHING_KEY = "imtrans-report-smoothing";
  var SCROLL_KEY = "imtrans-report-scroll:" + location.pathname;

  function element(name, attributes) {
    var node = document.createElementNS(NS, name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    return node;
  }

  // TensorBoard's smoothing: an exponential moving average, divided by (1 - weight^n) so that
  // the first points are not pulled towards the zero the average starts from.
  function smoothed(values, weight) {
    var out = new Array(values.length), last = 0;
    for (var i = 0; i < values.length; i++) {
      last = last * weight + (1 - weight) * values[i];
      out[i] = last / (1 - Math.pow(weight, i + 1));
    }
    return out;
  }

  // Bucket means, as the report draws long curves (imtrans.report.data.downsample).
  function buckets(steps, values, max) {
    var count = values.length;
    if (count <= max) { return [steps, values]; }
    var xs = [], ys = [];
    for (var b = 0; b < max; b++) {
      var start = Math.floor(count * b / max), stop = Math.floor(count * (b + 1) / max);
      var sx = 0, sy = 0;
      for (var i = start; i < stop; i++) { sx += steps[i]; sy += values[i]; }
      xs.push(sx / (stop - start));
      ys.push(sy / (stop - start));
    }
    return [xs, ys];
  }

  function nearest(steps, step) {  // steps ascend: binary search
    var low = 0, high = steps.length - 1;
    while (high - low > 1) {
      var middle = (low + high) >> 1;
      if (steps[middle] <= step) { low = middle; } else { high = middle; }
    }
    return Math.abs(steps[high] - step) < Math.abs(steps[low] - step) ? high : low;
  }

  function number(value) {
    if (value === Math.round(value) && Math.abs(value) < 1e15) { return String(value); }
    return String(Number(value.toPrecision(4)));
  }

  function Chart(svg, spec, geometry) {
    this.svg = svg;
    this.spec = spec;
    this.g = geometry;
    this.plotW = geometry.width - geometry.left - geometry.right;
    this.plotH = geometry.height - geometry.top - geometry.bottom;
    this.shown = spec.lines.map(function (line) { return line.values; });
    this.weight = 0;
    this.curves = [];
    this.layer = element("g", {"class": "hover", "pointer-events": "none",
                               "visibility": "hidden"});
    this.cursor = element("line", {"class": "cursor", "y1": geometry.top,
                                   "y2": geometry.height - geometry.bottom});
    this.layer.appendChild(this.cursor);
    this.dots = spec.lines.map(function (line) {
      return this.layer.appendChild(element("circle", {"class": "hover-dot", "r": 3.5,
                                                       "fill": line.colour}));
    }, this);
    this.box = this.layer.appendChild(element("rect", {"class": "tip", "rx": 4}));
    this.text = this.layer.appendChild(element("text", {"class": "tip-text"}));
    svg.appendChild(this.layer);
    svg.addEventListener("mousemove", this.move.bind(this));
    svg.addEventListener("mouseleave", this.hide.bind(this));
  }

  Chart.prototype.x = function (step) {
    var s = this.spec;
    return this.g.left + (step - s.x0) / (s.x1 - s.x0) * this.plotW;
  };

  Chart.prototype.y = function (value) {
    var s = this.spec;
    return this.g.top + (s.y1 - value) / (s.y1 - s.y0) * this.plotH;
  };

  Chart.prototype.smooth = function (weight) {
    if (!this.spec.smooth) { return; }
    this.weight = weight;
    // An attribute, not a class: the chart's class stays what the page was written with.
    this.svg.toggleAttribute("data-smoothed", weight > 0);
    this.spec.lines.forEach(function (line, index) {
      var curve = this.curves[index];
      if (weight <= 0) {
        this.shown[index] = line.values;
        if (curve) { curve.setAttribute("visibility", "hidden"); }
        return;
      }
      var values = smoothed(line.values, weight), drawn = buckets(line.steps, values, DRAWN);
      this.shown[index] = values;
      var points = drawn[0].map(function (step, i) {
        return this.x(step).toFixed(1) + "," + this.y(drawn[1][i]).toFixed(1);
      }, this).join(" ");
      if (!curve) {
        curve = element("polyline", {"class": "line smooth", "stroke": line.colour,
                                     "data-smooth": index});
        this.svg.insertBefore(curve, this.layer);
        this.curves[index] = curve;
      }
      curve.setAttribute("points", points);
      curve.setAttribute("visibility", "visible");
    }, this);
  };

  Chart.prototype.hide = function () { this.layer.setAttribute("visibility", "hidden"); };

  Chart.prototype.move = function (event) {
    var g = this.g, rect = this.svg.getBoundingClientRect();
    var vx = (event.clientX - rect.left) * g.width / rect.width;
    if (!(rect.width > 0) || vx < g.left || vx > g.width - g.right) { this.hide(); return; }
    var step = this.spec.x0 + (vx - g.left) / this.plotW * (this.spec.x1 - this.spec.x0);
    var at = null, rows = [];
    this.spec.lines.forEach(function (line, index) {
      var k = nearest(line.steps, step), value = this.shown[index][k];
      this.dots[index].setAttribute("cx", this.x(line.steps[k]).toFixed(1));
      this.dots[index].setAttribute("cy", this.y(value).toFixed(1));
      rows.push({line: line, step: line.steps[k], value: value, raw: line.values[k]});
      if (at === null || Math.abs(line.steps[k] - step) < Math.abs(at - step)) {
        at = line.steps[k];
      }
    }, this);
    var cx = this.x(at).toFixed(1);
    this.cursor.setAttribute("x1", cx);
    this.cursor.setAttribute("x2", cx);
    this.svg.setAttribute("data-hover-step", String(at));
    this.write(at, rows);
    this.layer.setAttribute("visibility", "visible");
    this.place(this.x(at));
  };

  Chart.prototype.write = function (at, rows) {
    var text = this.text, smoothing = this.spec.smooth && this.weight > 0;
    while (text.firstChild) { text.removeChild(text.firstChild); }
    var lines = [["step " + number(at), null]];
    rows.forEach(function (row) {
      var shown = number(row.value);
      if (smoothing) { shown += " (raw " + number(row.raw) + ")"; }
      if (row.step !== at) { shown += " at step " + number(row.step); }
      lines.push([rows.length > 1 ? row.line.label + ": " + shown : shown, row.line.colour]);
    });
    lines.forEach(function (entry, index) {
      var span = element("tspan", {"x": 0, "dy": index ? "1.3em" : "1em"});
      if (entry[1]) {
        var swatch = element("tspan", {"fill": entry[1]});
        swatch.textContent = "\\u25A0 ";
        span.appendChild(swatch);
      }
      span.appendChild(document.createTextNode(entry[0]));
      text.appendChild(span);
    });
  };

  Chart.prototype.place = function (cx) {  // right of the cursor, or left where it won't fit
    var g = this.g, box = this.text.getBBox(), pad = 6;
    var width = box.width + 2 * pad, height = box.height + 2 * pad;
    var left = cx + 10 + width <= g.width - g.right ? cx + 10 : Math.max(g.left, cx - 10 - width);
    var top = g.top + 4;
    this.box.setAttribute("x", left.toFixed(1));
    this.box.setAttribute("y", top);
    this.box.setAttribute("width", width.toFixed(1));
    this.box.setAttribute("height", height.toFixed(1));
    this.text.setAttribute("transform", "translate(" + (left + pad).toFixed(1) + "," +
                           (top + pad - box.y).toFixed(1) + ")");
  };

  function stored(storage, key) {
    try { return window[storage].getItem(key); } catch (error) { return null; }
  }

  function store(storage, key, value) {
    try { window[storage].setItem(key, value); } catch (error) { /* file:// may refuse */ }
  }

  function setup() {
    var node = document.getElementById("chart-data");
    if (!node) { return; }
    var data = JSON.parse(node.textContent);
    var charts = [];
    data.charts.forEach(function (spec, index) {
      var svg = document.querySelector('svg.chart[data-chart="' + index + '"]');
      if (svg) { charts.push(new Chart(svg, spec, data.geometry)); }
    });
    var slider = document.getElementById("smoothing");
    if (slider) {
      var output = document.getElementById("smoothing-value");
      var saved = parseFloat(stored("localStorage", SMOOTHING_KEY));
      if (saved >= 0 && saved <= 0.99) { slider.value = String(saved); }
      var apply = function () {
        var weight = Math.min(0.99, Math.max(0, parseFloat(slider.value) || 0));
        if (output) { output.textContent = weight.toFixed(2); }
        charts.forEach(function (chart) { chart.smooth(weight); });
        store("localStorage", SMOOTHING_KEY, String(weight));
      };
      slider.addEventListener("input", apply);
      apply();
    }
    document.documentElement.setAttribute("data-charts", String(charts.length));
  }

  document.addEventListener("DOMContentLoaded", setup);
  // A live page reloads itself every few seconds: come back to where the reader was.
  window.addEventListener("pagehide", function () {
    store("sessionStorage", SCROLL_KEY, String(window.scrollY));
  });
  window.addEventListener("load", function () {
    var y = parseFloat(stored("sessionStorage", SCROLL_KEY));
    if (document.querySelector("meta[http-equiv=refresh]") && y > 0) {
      window.scrollTo(0, y);
    }
  });
})();
"""
