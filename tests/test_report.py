"""report.html: content from the run directory, robustness, the CLI, and a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from html import unescape
from pathlib import Path

import pytest
from click.testing import CliRunner

from imtrans.cli import cli
from imtrans.errors import DataError
from imtrans.report import write_report
from imtrans.report.data import Sample
from imtrans.report.sections import select_samples
from imtrans.report.svg import format_number, nice_ticks

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
    assert sorted(sources) == sorted(f"samples/{p.name}" for p in (run / "samples").iterdir())
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
        "protocol": {"images": 8, "size": 32}}))
    (run / "eval" / "half.json").write_text('{"checkpoint": ')

    html = write_report(run).read_text(encoding="utf-8")
    rows = dict(re.findall(r'<tr class="([^"]+)"><td class="mono">([^<]+)', html))
    assert rows == {"is-last": "step_00000004.safetensors", "is-best": "best.safetensors"}
    assert "Best seen by fid" in html and "fid = 120.5 (lower is better) at step 2" in html
    assert "optimistically biased" in html and "the result of this run" in html
    assert "133.2" in html and "0.048 ± 0.003" in html and ">test<" in html
    assert "half.json" in html and "unreadable" in html
    assert "no evaluation yet" not in html


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


# --- in a real browser --------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    """A headless Chromium: IMTRANS_CHROMIUM, one on PATH, or Debian's package installed now."""
    names = [os.environ.get("IMTRANS_CHROMIUM", ""), "chromium", "chromium-browser",
             "google-chrome"]
    found = next((shutil.which(n) for n in names if n and shutil.which(n)), None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no Chromium found (set IMTRANS_CHROMIUM, or install chromium); "
                    "installing it needs root and apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    commands = [["apt-get", "update"],
                ["apt-get", "install", "-y", "--no-install-recommends",
                 "-o", "DPkg::Lock::Timeout=300", "chromium"]]
    for command in commands:
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=900,
                           env=env)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            pytest.skip(f"no Chromium, and `{' '.join(command)}` failed: {detail[-300:]}")
    return shutil.which("chromium") or pytest.skip("chromium installed but not on PATH")


def browse(chromium: str, page: Path, profile: Path, *flags: str) -> str:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
               *flags, page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_report_in_chromium(chromium: str, pix2pix_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    run = copy_run(pix2pix_run, tmp_path)
    page = write_report(run)
    dom = browse(chromium, page, tmp_path / "profile", "--window-size=1280,2400", "--dump-dom")
    states = re.findall(r'<img [^>]*data-state="(\w+)"', dom)
    assert len(re.findall(r"<img ", dom)) == len(states) == len(list((run / "samples").iterdir()))
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
    newest = sorted((run / "samples").iterdir())[-1]
    newest.unlink()  # deleted after the report was written
    dom = browse(chromium, page, tmp_path / "profile", "--window-size=1280,2400", "--dump-dom")
    assert re.search(rf'<img src="samples/{newest.name}"[^>]*data-state="broken"', dom)
    assert f"image missing: samples/{newest.name}" in dom
    assert 'data-state="loaded"' in dom  # the other grid still loads
