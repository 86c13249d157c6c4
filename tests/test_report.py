"""report.html: content from the run directory, robustness, the CLI, and a real browser."""

from __future__ import annotations

import json
import re
import shutil
import time
import tomllib
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from conftest import browse

from imtrans.cli import cli
from imtrans.errors import DataError
from imtrans.report import run_labels, write_comparison, write_report
from imtrans.report.charts import EMBEDDED_POINTS
from imtrans.report.data import Sample, read_run
from imtrans.report.sections import select_samples
from imtrans.report.svg import PALETTE, format_number, nice_ticks
from imtrans.runs.directory import RunDir
from imtrans.training.jobs.samples import write_samples
from imtrans.training.sample_grid import save_grid

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A private copy of a session run, so that tests may add and delete files; without what
    other tests (eval, export) may have added to the shared run."""
    copy = tmp_path / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval", "export", "report.html"))
    return copy


def charts(html: str) -> dict[str, str]:
    """Each SVG chart of the page by its title."""
    found = {}
    for svg in re.findall(r'<svg class="chart".*?</svg>', html, flags=re.S):
        title = re.search(r'<text class="chart-title"[^>]*>(.*?)</text>', svg)
        assert title, svg[:200]
        found[unescape(title.group(1))] = svg
    return found


def line_points(svg: str) -> int:
    points = re.search(r'<polyline class="line"[^>]* points="([^"]*)"', svg)
    assert points
    return len(points.group(1).split())


def chart_data(html: str) -> dict[str, Any]:
    """The chart data the page embeds for its script."""
    found = re.findall(r'<script type="application/json" id="chart-data">(.*?)</script>', html,
                       flags=re.S)
    assert len(found) == 1
    return json.loads(found[0])


def training_records(run: Path) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "losses" in r]


def write_metrics(run: Path, records: list[dict], tail: str = "") -> None:
    lines = [json.dumps(r) for r in records]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n\n" + tail, encoding="utf-8")


@pytest.mark.parametrize("fixture", ["pix2pix_run", "cyclegan_run"])
def test_report_of_a_tiny_run(fixture: str, request: pytest.FixtureRequest,
                              tmp_path: Path) -> None:
    run = copy_run(request.getfixturevalue(fixture), tmp_path)
    path = write_report(run)
    assert path == run / "report.html"
    assert not list(run.glob(".report.html*")), "the partial file must be renamed"
    html = path.read_text(encoding="utf-8")

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "losses" in r]
    shown = charts(html)
    for name in records[-1]["losses"]:
        assert name in shown, f"no chart titled {name!r}"
        assert line_points(shown[name]) == len(records)
    assert {"images/s", "learning rate"} <= shown.keys()
    assert f"step {records[-1]['step']}" in html.split("</header>")[0]

    sources = re.findall(r'<img src="([^"]+)"', html)
    grids = (run / "samples").glob("*.png")
    assert sorted(sources) == sorted(f"samples/{p.name}" for p in grids)
    assert all((run / src).is_file() for src in sources)
    assert all('loading="' in tag for tag in re.findall(r"<img [^>]*>", html))

    last = sorted((run / "checkpoints").glob("step_*.safetensors"))[-1].name
    assert re.search(rf"{last}<span class=\"badge last\">LAST</span>", html)
    if not (run / "checkpoints" / "best.json").exists():
        assert "badge best" not in html
    if not (run / "eval").exists() and "eval" not in (run / "metrics.jsonl").read_text():
        assert "no evaluation yet" in html
    environment = json.loads((run / "environment.json").read_text())
    assert "[trainer]" in html and f"<th>torch</th><td>{environment['torch']}</td>" in html
    # Self-contained: nothing is fetched from elsewhere.
    assert not re.search(r"<link|<script src|src=\"https?:|url\(|@import", html)


def test_long_and_messy_metrics(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "recipe.toml").write_text('[run]\nname = "<script>alert(1)</script> & co"\n')
    records: list[dict] = [
        {"step": s, "epoch": 1 + s // 1000, "lr": 2e-4, "images_per_sec": 10.0 + s % 7,
         "losses": {"G": 5.0 - s / 10_000, "D": 0.5 + (s % 13) / 100, "a<b": 1.0},
         "unknown": [1, 2]} for s in range(1, 20_001)]
    records[5]["losses"]["G"] = float("nan")  # a diverged value is left out, not drawn
    records += [{"step": s, "epoch": 3, "eval": {"fid": 200 - s / 100, "psnr": 12 + s / 1e4}}
                for s in range(4000, 20_001, 4000)]
    write_metrics(run, records, tail='{"step": 20001, "epoch": 21, "lo')

    start = time.perf_counter()
    html = write_report(run).read_text(encoding="utf-8")
    assert time.perf_counter() - start < 10, "20 000 records must not take long"

    shown = charts(html)
    assert {"G", "D", "a<b", "images/s", "learning rate", "fid", "psnr"} <= shown.keys()
    for name in ("G", "D", "a<b", "images/s"):
        assert line_points(shown[name]) == 1000, name
        assert '<polygon class="band"' in shown[name]  # min..max of each bucket
    assert line_points(shown["fid"]) == 5 and shown["fid"].count("<circle") == 5
    assert "a&lt;b" in html and "<text class=\"chart-title\" x=\"58\" y=\"20\">a<b" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert "<script>alert" not in html
    assert "step 20000" in html  # the truncated record of step 20001 is skipped
    assert "no samples yet" in html and "no checkpoints yet" in html
    # The script's data: capped bucket means, the loss name escaped inside <script> yet intact.
    embedded = {c["title"]: c for c in chart_data(html)["charts"]}
    assert '"a\\u003cb"' in html and embedded["a<b"]["smooth"] is True
    assert len(embedded["G"]["lines"][0]["values"]) == EMBEDDED_POINTS
    assert embedded["fid"]["lines"][0]["values"] == [160.0, 120.0, 80.0, 40.0, 0.0]
    assert embedded["fid"]["smooth"] is False


def test_best_and_last_checkpoints_and_eval_results(cyclegan_run: Path, tmp_path: Path) -> None:
    run = copy_run(cyclegan_run, tmp_path)
    checkpoints = run / "checkpoints"
    for copy in ("step_00000002.safetensors", "best.safetensors"):
        shutil.copy(checkpoints / "step_00000004.safetensors", checkpoints / copy)
    (checkpoints / "best.json").write_text(json.dumps({
        "metric": "fid", "value": 120.5, "step": 2, "epoch": 1,
        "checkpoint": "best.safetensors", "lower_is_better": True}))
    (run / "eval").mkdir()
    (run / "eval" / "test.json").write_text(json.dumps({
        "checkpoint": "step_00000004.safetensors", "step": 4, "epoch": 1, "split": "test",
        "direction": "AtoB", "metrics": {"fid": 133.25, "kid": 0.048, "kid_std": 0.003,
                                         "psnr": 14.2, "ssim": 0.41},
        "protocol": {"images": 8, "size": 32},
        "warnings": ["FID on 8 images is strongly biased upward"]}))
    (run / "eval" / "half.json").write_text('{"checkpoint": ')

    html = write_report(run).read_text(encoding="utf-8")
    rows = dict(re.findall(r'<tr class="([^"]+)"><td class="mono">([^<]+)', html))
    assert rows == {"is-last": "step_00000004.safetensors", "is-best": "best.safetensors"}
    assert "Best seen by fid" in html and "fid = 120.5 (lower is better) at step 2" in html
    assert "optimistically biased" in html and "the result of this run" in html
    assert "133.2" in html and "0.04800 ± 0.00300" in html and ">test<" in html
    assert "half.json" in html and "unreadable" in html
    assert "<li>warning: FID on 8 images is strongly biased upward</li>" in html
    assert "no evaluation yet" not in html
    # The scores come first; the protocol is no column but a folded list under its row.
    table = html[html.index('<table class="results">'):]
    head = re.findall(r"<th[^>]*>([^<]*)</th>", table[:table.index("</thead>")])
    assert head == ["result", "fid", "kid", "psnr", "ssim", "step", "epoch", "split",
                    "direction"]
    assert re.search(r'<details class="protocol"><summary>protocol: 8 images</summary>'
                     r"<dl class=\"protocol\"><dt>checkpoint</dt><dd>step_00000004"
                     r"\.safetensors</dd>.*<dt>size</dt><dd>32</dd>", table)


def test_empty_run_directory(tmp_path: Path) -> None:
    html = write_report(tmp_path).read_text(encoding="utf-8")
    for empty in ("no metrics yet", "no samples yet", "no checkpoints yet", "no recipe.toml yet",
                  "no environment.json yet", "no evaluation yet", "no training step yet"):
        assert empty in html
    with pytest.raises(DataError, match="does not exist"):
        write_report(tmp_path / "missing")


def test_many_samples_show_the_newest_and_a_spread_of_older_ones() -> None:
    found = [Sample(step, f"samples/step_{step:08d}.png", None) for step in range(100, 10_001, 100)]
    newest, older = select_samples(found)
    assert [s.step for s in newest] == list(range(10_000, 8_800, -100))
    assert len(older) == 12 and older[-1].step == 100 and older[0].step == 8_800
    assert [s.step for s in older] == sorted((s.step for s in older), reverse=True)
    assert select_samples(found[:5]) == (found[:5][::-1], [])


def test_ticks_and_labels() -> None:
    assert nice_ticks(0.3, 9.1) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(1, 4, min_step=1) == [1, 2, 3, 4]
    assert nice_ticks(7, 7, min_step=1) == [6, 7, 8]  # one point still gets an axis
    assert [format_number(t, 10_000) for t in nice_ticks(1, 50_000, min_step=1)] == [
        "0", "10k", "20k", "30k", "40k", "50k"]
    assert format_number(2e-4, 5e-5) == "2e-4" and format_number(0.25, 0.05) == "0.25"


def test_cli_report(pix2pix_run: Path, tmp_path: Path) -> None:
    run = copy_run(pix2pix_run, tmp_path)
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(run / "report.html")
    assert (run / "report.html").is_file()
    (tmp_path / "empty").mkdir()
    for target, message in ((tmp_path / "nope", "does not exist"),
                            (tmp_path / "empty", "has no recipe.toml")):
        result = CliRunner().invoke(cli, ["report", str(target)])
        assert result.exit_code == 1
        assert "error:" in result.output and message in result.output
        assert "Traceback" not in result.output


def checkpoint_rows(html: str) -> list[tuple[str, str, str, str]]:
    """(file, badges, step, epoch) of each row of the checkpoint table, in page order."""
    table = re.search(r'<table class="compact checkpoints">.*?</table>', html, flags=re.S)
    assert table
    rows = []
    for cell, step, epoch in re.findall(r'<tr[^>]*><td class="mono">(.*?)</td>'
                                        r'<td class="num">(.*?)</td><td class="num">(.*?)</td>',
                                        table.group(0)):
        badges = " ".join(re.findall(r'<span class="badge \w+">(\w+)</span>', cell))
        rows.append((re.sub(r"<span.*", "", cell), badges, step, epoch))
    return rows


def test_checkpoints_in_step_order_with_epochs_and_the_last_marked(tmp_path: Path) -> None:
    from imtrans.runs.checkpoints.files import checkpoint_name, parse_checkpoint_name

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    names = [checkpoint_name(10, epoch_end=1), "best.safetensors", checkpoint_name(9),
             checkpoint_name(100_000_000, epoch_end=12), checkpoint_name(5),
             checkpoint_name(99_999_999), "notes.safetensors", "step_7.safetensors"]
    for size, name in enumerate(names, start=1):
        (folder / name).write_bytes(b"x" * size)
    (folder / "best.json").write_text(json.dumps({
        "metric": "fid", "value": 80.0, "step": 9, "epoch": 1, "checkpoint": "best.safetensors",
        "lower_is_better": True}))

    html = write_report(tmp_path).read_text(encoding="utf-8")
    assert checkpoint_rows(html) == [
        ("step_00000005.safetensors", "", "5", ""),
        ("step_00000009.safetensors", "", "9", ""),
        ("step_00000010_epoch_0001.safetensors", "", "10", "1 (end)"),
        ("step_99999999.safetensors", "", "99999999", ""),  # 8 digits, before 9 digits
        ("step_100000000_epoch_0012.safetensors", "LAST", "100000000", "12 (end)"),
        # Not a step name: listed by name, best.json tells the best one's step and epoch.
        ("best.safetensors", "BEST", "9", "1"),
        ("notes.safetensors", "", "", ""),
        ("step_7.safetensors", "", "", ""),  # the loader would not take it either
    ]
    assert ("<code>step_100000000_epoch_0012.safetensors</code>, step 100000000, at the end of "
            "epoch 12: the result of this run") in html
    # The report reads names exactly as the checkpoint module writes and parses them.
    for found in read_run(tmp_path).checkpoints:
        assert (found.step, found.epoch) == (parse_checkpoint_name(found.name) or (None, None))


def test_sample_grids_in_step_order_with_their_column_labels(tmp_path: Path) -> None:
    from PIL import Image

    samples = tmp_path / "samples"
    samples.mkdir()
    images = [torch.rand(2, 3, 8, 8) * 2 - 1 for _ in range(3)]
    save_grid(images, samples / "step_00000005.png")  # a trainer returning a plain list
    save_grid({"real A": images[0], "fake B <x>": images[1]}, samples / "step_00000010.png")
    save_grid(images[:2], samples / "step_100000000.png")
    shutil.copy(samples / "step_00000005.png", samples / "step_99999999.png")  # no labels

    assert json.loads((samples / "step_00000005.json").read_text()) == {
        "columns": ["input", "output", "column 3"]}
    assert json.loads((samples / "step_00000010.json").read_text()) == {
        "columns": ["real A", "fake B <x>"]}
    with Image.open(samples / "step_00000005.png") as grid:
        assert grid.size == (3 * (8 + 2) + 2, 2 * (8 + 2) + 2)  # the labels match the columns
    assert not list(samples.glob(".tmp-*"))

    html = write_report(tmp_path).read_text(encoding="utf-8")
    figures = re.findall(r"<figure>(.*?)</figure>", html)
    assert [re.findall(r"<figcaption>step (\d+)</figcaption>", f) for f in figures] == [
        ["100000000"], ["99999999"], ["10"], ["5"]]  # newest first, by step as a number
    labels = [re.findall(r'<span title="[^"]*">([^<]*)</span>', f) for f in figures]
    assert labels == [["input", "output"], [], ["real A", "fake B &lt;x&gt;"],
                      ["input", "output", "column 3"]]
    assert "its columns are labelled above it" in html
    # Each column gets room for its label: 8 px images are enlarged 4 times (crisp).
    assert re.search(r'<div class="sample-grid" style="width: 128px"><div class="grid-labels" '
                     r'style="padding-left: 6.250%; grid-template-columns: repeat\(3, 1fr\)">',
                     html)
    assert [s.step for s in read_run(tmp_path).samples] == [5, 10, 99_999_999, 100_000_000]


@pytest.mark.parametrize(("fixture", "columns"), [
    ("pix2pix_run", ["input A", "fake B", "real B"]),
    ("cyclegan_run", ["real A", "fake B", "reconstructed A", "identity A",
                      "real B", "fake A", "reconstructed B", "identity B"]),
])
def test_trainers_label_the_columns_of_their_grids(fixture: str, columns: list[str],
                                                   request: pytest.FixtureRequest,
                                                   tmp_path: Path) -> None:
    from PIL import Image

    run = copy_run(request.getfixturevalue(fixture), tmp_path)
    crop = tomllib.loads((run / "recipe.toml").read_text())["data"]["crop_size"]
    grids = sorted((run / "samples").glob("*.png"))
    assert grids
    for grid in grids:
        assert json.loads(grid.with_suffix(".json").read_text()) == {"columns": columns}
        with Image.open(grid) as image:
            assert image.size[0] == len(columns) * (crop + 2) + 2
    html = write_report(run).read_text(encoding="utf-8")
    headers = re.findall(r'<div class="grid-labels"[^>]*>(.*?)</div>', html)
    assert len(headers) == len(grids)
    assert all(re.findall(r">([^<]+)</span>", h) == columns for h in headers)


def tiny_trainer(name: str, **sections: Any) -> Any:
    from imtrans.catalogue.plugins import load_components
    from imtrans.catalogue.recipe_loader import recipe_from_dict
    from imtrans.training.build import build_training

    builtins = load_components(autoload=False)
    raw = {"trainer": {"name": name}, "data": {"root": "unused"},
           "generator": {"ngf": 4}, "discriminator": {"ndf": 4}} | sections
    if name == "pix2pix":
        raw["generator"] |= {"name": "unet", "num_downs": 5}
    recipe = recipe_from_dict(raw, registry=builtins)
    return build_training(recipe, builtins, device=torch.device("cpu"), data=False,
                          speed=False).trainer


@pytest.mark.parametrize(("name", "sections", "columns"), [
    ("cyclegan", {}, ["real A", "fake B", "reconstructed A", "identity A", "real B", "fake A",
                      "reconstructed B", "identity B"]),
    ("cyclegan", {"losses": {"identity": {"weight": 0.0}}},
     ["real A", "fake B", "reconstructed A", "real B", "fake A", "reconstructed B"]),
    ("pix2pix", {}, ["input A", "fake B", "real B"]),
])
def test_sample_columns_and_sampling_leaves_training_untouched(
        name: str, sections: dict[str, Any], columns: list[str], tmp_path: Path) -> None:
    torch.manual_seed(0)
    trainer = tiny_trainer(name, **sections)
    generator = torch.Generator().manual_seed(1)
    batch = {"A": torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1,
             "B": torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1}
    rng = torch.get_rng_state()
    buffers = [b.clone() for m in trainer.modules().values() for b in m.buffers()]
    run = RunDir(tmp_path)
    run.samples.mkdir()
    write_samples(trainer, batch, run, 3)
    assert torch.equal(torch.get_rng_state(), rng)  # the extra passes drew in a forked RNG
    after = [b for m in trainer.modules().values() for b in m.buffers()]
    assert all(torch.equal(a, b) for a, b in zip(buffers, after, strict=True))
    assert json.loads(run.sample(3).with_suffix(".json").read_text()) == {"columns": columns}

    shown = trainer.sample_images(batch)
    assert list(shown) == columns
    assert torch.equal(shown[columns[0]], batch["A"])
    if name == "cyclegan":  # instance norm, no dropout: each column is a fixed function
        with torch.no_grad():
            fake_b, fake_a = trainer.gen_ab(batch["A"]), trainer.gen_ba(batch["B"])
            assert torch.equal(shown["fake B"], fake_b)
            assert torch.equal(shown["reconstructed A"], trainer.gen_ba(fake_b))
            assert torch.equal(shown["fake A"], fake_a)
            assert torch.equal(shown["reconstructed B"], trainer.gen_ab(fake_a))
            if "identity B" in shown:
                assert torch.equal(shown["identity B"], trainer.gen_ab(batch["B"]))
                assert torch.equal(shown["identity A"], trainer.gen_ba(batch["A"]))
        assert torch.equal(shown["real B"], batch["B"])
    else:
        assert torch.equal(shown["real B"], batch["B"])


def test_charts_embed_their_data_and_the_smoothing_control(pix2pix_run: Path,
                                                           tmp_path: Path) -> None:
    run = copy_run(pix2pix_run, tmp_path)
    html = write_report(run).read_text(encoding="utf-8")
    assert re.search(r'<input type="range" id="smoothing" min="0" max="0.99" step="0.01" '
                     r'value="0.6">', html)
    data = chart_data(html)
    assert data["geometry"] == {"width": 420, "height": 220, "left": 58, "right": 16,
                                "top": 34, "bottom": 36}
    svgs = re.findall(r'<svg class="chart"[^>]* data-chart="(\d+)"[^>]*aria-label="([^"]*)"',
                      html)
    assert [(int(i), unescape(t)) for i, t in svgs] == [
        (i, c["title"]) for i, c in enumerate(data["charts"])]
    records = training_records(run)
    steps = [r["step"] for r in records]
    by_title = {c["title"]: c for c in data["charts"]}
    for name in records[-1]["losses"]:
        chart = by_title[name]
        assert chart["smooth"] is True and len(chart["lines"]) == 1
        assert chart["lines"][0]["steps"] == steps
        assert chart["lines"][0]["values"] == pytest.approx(
            [r["losses"][name] for r in records], rel=1e-5)
        assert chart["x0"] <= steps[0] and chart["x1"] >= steps[-1]
        assert chart["y0"] <= min(chart["lines"][0]["values"]) <= chart["y1"]
    assert by_title["images/s"]["smooth"] is False
    assert by_title["learning rate"]["lines"][0]["values"] == pytest.approx(
        [r["lr"] for r in records], rel=1e-5)


def test_live_pages_reload_themselves_and_finished_ones_do_not(tmp_path: Path) -> None:
    live = write_report(tmp_path, live=True).read_text(encoding="utf-8")
    head = live.split("</head>")[0]
    assert head.count('<meta http-equiv="refresh" content="30">') == 1
    assert ('<span class="live">LIVE</span> training in progress: this page reloads itself '
            "every 30 s") in live.split("</header>")[0]
    done = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<meta http-equiv" not in done and 'class="live"' not in done
    assert "this page does not reload itself" in done.split("</header>")[0]
    assert "<meta http-equiv" not in write_report(tmp_path, live=False).read_text(encoding="utf-8")


def two_runs(pix2pix_run: Path, cyclegan_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    first = copy_run(pix2pix_run, tmp_path / "a")
    second = copy_run(cyclegan_run, tmp_path / "b")
    write_report(first)  # the second has no report.html yet: no link to it
    return first, second


def legend(html: str) -> list[tuple[str, str, str]]:
    """(colour, link, name) of each entry of the first legend."""
    found = re.search(r'<div class="legend">(.*?)</div>', html)
    assert found
    return re.findall(r'<span class="swatch" style="background: (#\w+)"></span>'
                      r'(?:<a href="([^"]*)">)?([^<]+)', found.group(1))


def test_comparison_overlays_the_curves_of_several_runs(pix2pix_run: Path, cyclegan_run: Path,
                                                        tmp_path: Path) -> None:
    first, second = two_runs(pix2pix_run, cyclegan_run, tmp_path)
    (tmp_path / "pages").mkdir()
    page = write_comparison([first, second], tmp_path / "pages" / "cmp.html")
    assert page == tmp_path / "pages" / "cmp.html"
    html = page.read_text(encoding="utf-8")
    names = [first.name, second.name]
    assert legend(html) == [(PALETTE[0], f"../a/{first.name}/report.html", names[0]),
                            (PALETTE[1], "", names[1])]
    assert "<h1>Comparing 2 runs</h1>" in html and "<meta http-equiv" not in html

    by_title = {c["title"]: c for c in chart_data(html)["charts"]}
    records = [training_records(first), training_records(second)]
    chart = by_title["G"]  # both trainers log G: one curve per run, in the run's colour
    assert chart["smooth"] is True
    assert [(line["label"], line["colour"]) for line in chart["lines"]] == [
        (names[0], PALETTE[0]), (names[1], PALETTE[1])]
    for line, logged in zip(chart["lines"], records, strict=True):
        assert line["steps"] == [r["step"] for r in logged]
        assert line["values"] == pytest.approx([r["losses"]["G"] for r in logged], rel=1e-5)
    assert [line["label"] for line in by_title["D"]["lines"]] == [names[0]]  # pix2pix only
    assert [line["label"] for line in by_title["D_A"]["lines"]] == [names[1]]
    assert {"images/s", "learning rate"} <= by_title.keys()
    svg = charts(html)["G"]
    assert re.findall(r'<polyline class="line" stroke="(#\w+)"', svg) == list(PALETTE[:2])
    assert "1 of 2 runs" in charts(html)["D"]
    assert re.search(r'<input type="range" id="smoothing"', html)
    differences = html.split('id="differences"')[1]
    assert ('<td class="mono">trainer.name</td><td class="mono">&quot;pix2pix&quot;</td>'
            '<td class="mono">&quot;cyclegan&quot;</td>') in differences
    assert not re.search(r"<link|<script src|src=\"https?:|url\(|@import", html)


def test_runs_of_the_same_name_are_told_apart() -> None:
    assert run_labels([Path("x/a/run"), Path("x/b/run"), Path("y/other")]) == [
        "a/run", "b/run", "other"]
    assert run_labels([Path("one/run"), Path("two/run")]) == ["one/run", "two/run"]


def test_cli_compares_several_runs(pix2pix_run: Path, cyclegan_run: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = two_runs(pix2pix_run, cyclegan_run, tmp_path)
    target = tmp_path / "both.html"
    result = CliRunner().invoke(cli, ["report", str(first), str(second), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(target)
    assert [name for _, _, name in legend(target.read_text())] == [first.name, second.name]

    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    result = CliRunner().invoke(cli, ["report", str(first), str(second)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "compare.html"
    assert (tmp_path / "here" / "compare.html").is_file()

    result = CliRunner().invoke(cli, ["report", str(first), "-o", str(target)])
    assert result.exit_code == 2 and "--output is for comparing several runs" in result.output
    for args, message in (([str(first), str(tmp_path / "nope")], "does not exist"),
                          ([str(first), str(tmp_path / "here")], "has no recipe.toml"),
                          ([str(first), str(first)], "is given twice")):
        result = CliRunner().invoke(cli, ["report", *args])
        assert result.exit_code == 1, result.output
        assert "error:" in result.output and message in result.output
        assert "Traceback" not in result.output


# --- in a real browser --------------------------------------------------------------------


def test_report_in_chromium(chromium: str, pix2pix_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    run = copy_run(pix2pix_run, tmp_path)
    page = write_report(run)
    dom = browse(chromium, page, tmp_path / "profile", "--window-size=1280,2400", "--dump-dom")
    states = re.findall(r'<img [^>]*data-state="(\w+)"', dom)
    grids = list((run / "samples").glob("*.png"))
    assert len(re.findall(r"<img ", dom)) == len(states) == len(grids)
    assert states and set(states) == {"loaded"}, states
    assert len(re.findall(r'<svg class="chart"', dom)) >= 6 and "<polyline" in dom
    assert "image missing" not in dom.replace('"image missing: "', "")

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    browse(chromium, page, tmp_path / "profile", "--window-size=1280,2400", f"--screenshot={shot}")
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    small = image.resize((320, 600))
    colours = small.getcolors(maxcolors=1 << 16) or []
    non_white = sum(count for count, rgb in colours if min(rgb) < 235)
    assert len(colours) > 100, "the screenshot looks blank"
    assert non_white > 0.1 * 320 * 600


def test_missing_image_is_flagged_in_chromium(chromium: str, cyclegan_run: Path,
                                              tmp_path: Path) -> None:
    run = copy_run(cyclegan_run, tmp_path)
    page = write_report(run)
    newest = sorted((run / "samples").glob("*.png"))[-1]
    newest.unlink()  # deleted after the report was written
    dom = browse(chromium, page, tmp_path / "profile", "--window-size=1280,2400", "--dump-dom")
    assert re.search(rf'<img src="samples/{newest.name}"[^>]*data-state="broken"', dom)
    assert f"image missing: samples/{newest.name}" in dom
    assert 'data-state="loaded"' in dom  # the other grid still loads


# The probe: written into a copy of a page beside it (so its relative image links hold), it
# records script errors from the start, then checks the page in the browser's own layout,
# hovers a chart and moves the smoothing slider, and leaves its findings as JSON in the DOM.
_CATCH_ERRORS = """<script>window.probeErrors = [];
window.addEventListener("error", function (e) { window.probeErrors.push(String(e.message)); });
</script>"""

_PROBE = """<script>
window.addEventListener("load", function () { setTimeout(function () {
  var out = {errors: window.probeErrors, charts: document.documentElement.dataset.charts};
  try { check(out); } catch (error) { out.errors.push("probe: " + error); }
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 100); });
function check(out) {
  function box(node) { var r = node.getBoundingClientRect(); return [r.width, r.height]; }
  var head = document.querySelector(".grid-labels");
  out.labels = head ? Array.prototype.map.call(head.children, function (span) {
    return {text: span.textContent, size: box(span),
            visible: getComputedStyle(span).visibility, overflow: span.scrollWidth >
              span.clientWidth + 1};
  }) : null;
  var grid = document.querySelector(".sample-grid");
  out.widths = grid ? [box(grid.querySelector("img"))[0], box(head)[0]] : null;
  var last = document.querySelector("tr.is-last .badge.last");
  out.last = last ? {text: last.textContent, size: box(last),
                     file: last.closest("td").firstChild.textContent} : null;
  out.legend = Array.prototype.map.call(
    document.querySelectorAll(".legend")[0] ? document.querySelectorAll(".legend")[0]
      .querySelectorAll(".legend-entry") : [], function (entry) { return entry.textContent; });
  var svg = document.querySelector('svg.chart[data-chart="0"]');
  function hover() {
    var r = svg.getBoundingClientRect();
    svg.dispatchEvent(new MouseEvent("mousemove", {bubbles: true, clientY: r.top + r.height / 2,
      clientX: r.left + r.width * (58 + 0.6 * (420 - 58 - 16)) / 420}));
    return {text: Array.prototype.map.call(svg.querySelectorAll(".tip-text > tspan"),
                                           function (t) { return t.textContent; }),
            shown: svg.querySelector("g.hover").getAttribute("visibility"),
            step: svg.getAttribute("data-hover-step"), tip: box(svg.querySelector(".tip"))};
  }
  var slider = document.getElementById("smoothing");
  var opened = svg.querySelector("polyline.smooth");
  out.opened = [document.getElementById("smoothing-value").textContent,
                opened ? opened.getAttribute("visibility") : null];
  slider.value = "0";
  slider.dispatchEvent(new Event("input"));
  out.hover = hover();
  slider.value = "0.9";
  slider.dispatchEvent(new Event("input"));
  var smooth = svg.querySelector("polyline.smooth");
  out.smooth = smooth ? {points: smooth.getAttribute("points").split(" ").length,
                         shown: smooth.getAttribute("visibility"),
                         output: document.getElementById("smoothing-value").textContent,
                         faded: svg.hasAttribute("data-smoothed")} : null;
  out.smoothHover = hover();
  slider.value = "0";
  slider.dispatchEvent(new Event("input"));
  out.unsmoothed = smooth ? smooth.getAttribute("visibility") : null;
}
</script>"""


def probe(chromium: str, page: Path, profile: Path, chart: int = 0) -> dict[str, Any]:
    """What the probe found on ``page``, hovering the chart numbered ``chart``."""
    html = page.read_text(encoding="utf-8")
    probed = page.with_name(f"probe-{page.name}")
    script = _PROBE.replace('data-chart="0"', f'data-chart="{chart}"')
    probed.write_text(html.replace("<head>", "<head>" + _CATCH_ERRORS, 1)
                      .replace("</body>", script + "</body>", 1), encoding="utf-8")
    dom = browse(chromium, probed, profile, "--window-size=1280,2400", "--dump-dom")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S)
    assert found, dom[-2000:]
    return json.loads(unescape(found.group(1)))


def js_number(value: float) -> str:
    """A value as the page script writes it: 4 significant digits, shortest form."""
    rounded = float(f"{value:.4g}")
    return str(int(rounded)) if rounded == int(rounded) else repr(rounded)


def ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average."""
    out, last = [], 0.0
    for count, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight**count))
    return out


def test_labels_last_mark_hover_and_smoothing_in_chromium(chromium: str, cyclegan_run: Path,
                                                          tmp_path: Path) -> None:
    run = copy_run(cyclegan_run, tmp_path)
    found = probe(chromium, write_report(run, live=True), tmp_path / "profile")
    assert found["errors"] == []
    html = (run / "report.html").read_text(encoding="utf-8")
    assert int(found["charts"]) == len(chart_data(html)["charts"]) >= 8

    columns = json.loads(sorted((run / "samples").glob("*.json"))[-1].read_text())["columns"]
    assert [label["text"] for label in found["labels"]] == columns
    for label in found["labels"]:
        width, height = label["size"]
        assert width > 20 and 8 < height < 40 and label["visible"] == "visible", label
        assert not label["overflow"], label
    image_width, labels_width = found["widths"]
    assert image_width > 0 and abs(image_width - labels_width) < 1  # the header spans the grid

    last = sorted((run / "checkpoints").glob("step_*.safetensors"))[-1].name
    assert found["last"]["text"] == "LAST" and found["last"]["file"] == last
    assert min(found["last"]["size"]) > 5

    # Hovering the first loss chart names the logged step nearest the pointer and its value.
    records = training_records(run)
    first = chart_data(html)["charts"][0]
    step = int(found["hover"]["step"])
    value = next(r["losses"][first["title"]] for r in records if r["step"] == step)
    assert found["hover"]["shown"] == "visible" and min(found["hover"]["tip"]) > 10
    assert found["hover"]["text"] == [f"step {step}", "\u25a0 " + js_number(value)]
    # Smoothing draws a second curve over the faded raw one and shows both values.
    assert found["smooth"] == {"points": len(records), "shown": "visible", "output": "0.90",
                               "faded": True}
    losses = [r["losses"][first["title"]] for r in records]
    smoothed = ema(losses, 0.9)[[r["step"] for r in records].index(step)]
    assert found["smoothHover"]["text"] == [
        f"step {step}", f"\u25a0 {js_number(smoothed)} (raw {js_number(value)})"]
    assert found["opened"] == ["0.60", "visible"]  # the page opens smoothed, as TensorBoard
    assert found["unsmoothed"] == "hidden"


def test_comparison_in_chromium(chromium: str, pix2pix_run: Path, cyclegan_run: Path,
                                tmp_path: Path) -> None:
    from PIL import Image

    first, second = two_runs(pix2pix_run, cyclegan_run, tmp_path)
    page = write_comparison([first, second], tmp_path / "compare.html")
    html = page.read_text(encoding="utf-8")
    titles = [chart["title"] for chart in chart_data(html)["charts"]]
    overlaid = chart_data(html)["charts"][titles.index("G")]  # a loss both runs log
    assert [line["label"] for line in overlaid["lines"]] == [first.name, second.name]
    found = probe(chromium, page, tmp_path / "profile", chart=titles.index("G"))
    assert found["errors"] == []
    assert found["legend"] == [first.name, second.name]
    # One row per run in the hover box, each with the run's name and its value at that step.
    step = int(found["hover"]["step"])
    values = [next(r["losses"]["G"] for r in training_records(run) if r["step"] == step)
              for run in (first, second)]
    assert found["hover"]["text"] == [f"step {step}"] + [
        f"\u25a0 {name}: {js_number(value)}"
        for name, value in zip((first.name, second.name), values, strict=True)]
    assert found["smooth"]["shown"] == "visible"

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-compare.png"
    shot.unlink(missing_ok=True)
    browse(chromium, page, tmp_path / "profile", "--window-size=1280,1600", f"--screenshot={shot}")
    with Image.open(shot) as image:
        colours = image.convert("RGB").resize((320, 400)).getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 100, "the screenshot looks blank"


# --- the evaluation table ------------------------------------------------------------------


def test_scores_and_spreads_share_one_formatter() -> None:
    from imtrans.report.numbers import format_score, format_spread

    # KID on a set no larger than its subset size: every subset is the same, kid_std is noise.
    assert format_spread(0.30080000123, 3.142e-16) == "0.3008 ± <0.0001"
    assert format_spread(0.4289, 0.01223) == "0.4289 ± 0.0122"
    assert format_spread(0.3008, 0.0) == "0.3008 ± 0.0000"
    assert format_spread(437.43, 12.345) == "437.4 ± 12.3"
    assert format_spread(2101.1, 0.04) == "2101 ± <1"
    assert format_spread(0.5, None) == "0.5000"
    assert format_spread(None, 0.1) == "— ± 0.1000"
    assert format_spread(3e-7, 1e-9) == "3.000e-07 ± 1.000e-09"  # too small for 4 decimals
    # FID, KID, PSNR, SSIM: 4 significant digits, fixed-point, trailing zeros kept.
    assert [format_score(v) for v in (437.4279413675595, 0.2629759396113877, 7.4926,
                                      0.048, 133.25, 9.99996, 0, None, float("nan"))] == [
        "437.4", "0.2630", "7.493", "0.04800", "133.2", "10.00", "0.000", "—", "nan"]


def real_eval_result(checkpoint: str, warnings: list[str]) -> dict[str, Any]:
    """A result as `imtrans eval --metrics fid,kid,psnr,ssim` writes it (its protocol copied
    from one such file; KID on 5 images, so kid_std is rounding noise)."""
    return {
        "checkpoint": checkpoint, "step": 4, "epoch": 0, "split": "val", "direction": "AtoB",
        "metrics": {"fid": 437.4279413675595, "kid": 0.30080000123, "kid_std": 3.142e-16,
                    "psnr": 7.501740850704363, "ssim": 0.2629759396113877},
        "warnings": warnings,
        "protocol": {
            "data_root": "/work/main/imtrans/samples/edges2shoes", "split": "val",
            "paired": True, "images": {"generated": 5, "real": 5}, "image_size": 64,
            "test_preprocessing": "resize to 64x64, no crop, no flip",
            "generation": {"mode": "paper", "seed": 0},
            "inception": {
                "file": "/work/shared/weights/fid_inception_tf2015.pt",
                "sha256": "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
                "standard": True,
                "input": "uint8 RGB -> [0, 1] -> bilinear resize to 299 (align_corners=False, "
                         "no antialias) -> x * 2 - 1",
                "features": "pool3, 2048-d; FID statistics in float64 (torchmetrics)"},
            "kid": {"kernel": "cubic polynomial, gamma 1/2048, coef 1",
                    "estimator": "unbiased MMD^2", "subsets": 100, "subset_size": 5, "seed": 0},
            "psnr_ssim": "kornia, per image then averaged, [0, 1] range, SSIM 11x11 Gaussian "
                         "window, PSNR capped at 100 dB"}}


EVAL_WARNINGS = [
    "FID on 5 images is strongly biased upward and comparable only with FID on as many "
    "images; compare KID, or use at least 50 images (the papers use the full test split)",
    "KID on 5 images is unbiased but noisy, and its subsets of 5 images overlap so much that "
    "kid_std understates that noise; use at least 50 images (the papers use the full test "
    "split)",
    "FID and KID were computed with non-standard Inception weights /tmp/pytest-of-someone/"
    "pytest-12/test_trust_flag_loads_a_nonsta0/pixels.pt (sha256 8da6332f25531a049f618047fc1b1c"
    "7e65193b5eac534793f338d46618cd8842), trusted by the user: they are not comparable with "
    "published scores or with scores of the standard weights"]

# Measures the evaluation table in the browser's own layout: the box of every cell, warning
# and protocol entry against its card's content box, with the protocols folded and unfolded,
# and leaves the findings as JSON in the DOM.
_TABLE_PROBE = """<script>
window.addEventListener("load", function () { setTimeout(function () {
  var card = document.getElementById("evaluation"), style = getComputedStyle(card);
  var box = card.getBoundingClientRect();
  var inner = {left: box.left + parseFloat(style.paddingLeft),
               right: box.right - parseFloat(style.paddingRight)};
  function measure(nodes) {
    return Array.prototype.map.call(nodes, function (node) {
      var r = node.getBoundingClientRect(), s = getComputedStyle(node);
      var range = document.createRange();
      range.selectNodeContents(node);
      var content = range.getBoundingClientRect();
      return {text: node.textContent, left: r.left, right: r.right, height: r.height,
              blank: r.height - parseFloat(s.paddingTop) - parseFloat(s.paddingBottom) -
                     content.height,
              clipped: node.scrollWidth > node.clientWidth + 1,
              overflow: s.textOverflow, whiteSpace: s.whiteSpace};
    });
  }
  function all() {
    var table = card.querySelector("table"), scroll = table.parentNode, warned = [];
    var walk = document.createTreeWalker(table, NodeFilter.SHOW_TEXT);
    while (walk.nextNode()) {  // each element whose text starts "warning:"
      if (walk.currentNode.data.indexOf("warning:") === 0) {
        warned.push(walk.currentNode.parentNode);
      }
    }
    return {cells: measure(table.querySelectorAll("th, tr:not(.details) > td")),
            warnings: measure(warned),
            entries: measure(table.querySelectorAll("details[open] dd")),
            table: table.getBoundingClientRect().right,
            scrolls: scroll.scrollWidth > scroll.clientWidth,
            below: box.bottom - parseFloat(style.paddingBottom) -
                   table.getBoundingClientRect().bottom,
            page: [document.documentElement.scrollWidth, window.innerWidth]};
  }
  var out = {card: inner, folded: all()};
  document.querySelectorAll("details.protocol").forEach(function (d) { d.open = true; });
  box = card.getBoundingClientRect();
  out.unfolded = all();
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 100); });
</script>"""


def eval_run(tmp_path: Path) -> Path:
    """A run directory holding two real-looking results, one of them with every warning."""
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    checkpoint = str(tmp_path / "runs" / "pix2pix_edges2shoes" / "checkpoints" /
                     "step_00000004.safetensors")
    (run / "eval" / "step_00000004_val_AtoB.json").write_text(
        json.dumps(real_eval_result(checkpoint, EVAL_WARNINGS), indent=2))
    ema = real_eval_result(checkpoint, EVAL_WARNINGS[:1])
    ema["protocol"]["generation"]["weights"] = "ema"
    (run / "eval" / "step_00000004_val_AtoB-267dce7e.json").write_text(json.dumps(ema))
    return run


@pytest.mark.parametrize("width", [1280, 1920, 700])
def test_evaluation_table_fits_its_card_in_chromium(chromium: str, tmp_path: Path,
                                                   width: int) -> None:
    """At 1280 and 1920 px the table fits its card; at 700 px, too narrow for the scores, it
    scrolls inside its card, and the warnings and protocol still wrap in the visible width."""
    narrow = width < 1000
    run = eval_run(tmp_path)
    page = write_report(run)
    probed = page.with_name("probe-report.html")
    probed.write_text(page.read_text(encoding="utf-8").replace(
        "</body>", _TABLE_PROBE + "</body>", 1), encoding="utf-8")
    dom = browse(chromium, probed, tmp_path / "profile", f"--window-size={width},1400",
                 "--dump-dom")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S)
    assert found, dom[-2000:]
    layout = json.loads(unescape(found.group(1)))
    card = layout["card"]

    for state in ("folded", "unfolded"):
        measured = layout[state]
        assert measured["page"][0] <= measured["page"][1], "the page scrolls sideways"
        assert measured["scrolls"] == narrow  # scrolling only as the last resort
        for cell in measured["cells"]:  # every header and score inside the card, none cut
            assert card["left"] - 0.5 <= cell["left"], cell
            assert narrow or cell["right"] <= card["right"] + 0.5, cell
            assert not cell["clipped"], cell
            # No blank band: no cell is much taller than what it holds (the protocol column
            # stretched each row to some 200 px).
            assert narrow or cell["blank"] < 16, cell
        shown = [w["text"] for w in measured["warnings"]]
        assert shown == [f"warning: {w}" for w in EVAL_WARNINGS[:1] + EVAL_WARNINGS]
        for warning in measured["warnings"]:  # wrapped inside the card, never cut
            assert warning["right"] <= card["right"] + 0.5 and not warning["clipped"], warning
            assert warning["overflow"] != "ellipsis" and warning["whiteSpace"] != "nowrap"
        assert 0 <= measured["below"] < 24, "a blank band under the table"
    entries = layout["unfolded"]["entries"]
    digest = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
    assert digest in [entry["text"] for entry in entries]
    for entry in entries:  # the protocol's paths and digests wrap inside the card
        assert entry["right"] <= card["right"] + 0.5 and not entry["clipped"], entry
    assert layout["folded"]["cells"][0]["text"] == "result"
    scores = [c["text"] for c in layout["folded"]["cells"]]
    assert "0.3008 ± <0.0001" in scores and "437.4" in scores and "0.2630" in scores
    assert not any("e-16" in text for text in scores)

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"report-evaluation-{width}.png"
    shot.unlink(missing_ok=True)
    browse(chromium, page, tmp_path / "profile", f"--window-size={width},1100",
           f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize(("step", "said"), [(20, True), (999, True), (1000, False)])
def test_early_samples_are_said_to_look_like_noise(step: int, said: bool) -> None:
    from imtrans.report.data import RunData, Sample
    from imtrans.report.sections import samples

    html = samples(RunData(name="r", samples=[
        Sample(step=2, href="samples/step_00000002.png", size=(8, 8)),
        Sample(step=step, href=f"samples/step_{step:08d}.png", size=(8, 8))]))
    assert (f"Noise at step {step} is expected" in html) is said
