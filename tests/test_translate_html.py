"""`imtrans translate --html`: the results page, its copies of the inputs, and a real browser."""

from __future__ import annotations

import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result
from conftest import browse
from PIL import Image

from imtrans.cli import cli
from imtrans.inference.html_page import (
    ASSETS,
    THUMBNAIL_SIDE,
    PageHeader,
    PageRow,
    page_name,
    write_pages,
)

#: A file name a page must escape in text and percent-encode in links.
ODD = 'x<&"y #1.png'


def write_inputs(folder: Path) -> dict[str, Path]:
    """Three readable images (one with an odd name, one large) and one unreadable file."""
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = {"a.jpg": folder / "a.jpg", "sub/b.png": folder / "sub/b.png",
             f"sub/{ODD}": folder / "sub" / ODD}
    Image.fromarray(rng.integers(0, 255, (50, 77, 3), dtype=np.uint8)).save(files["a.jpg"])
    Image.fromarray(rng.integers(0, 255, (30, 40), dtype=np.uint8)).save(files["sub/b.png"])
    Image.fromarray(rng.integers(0, 255, (600, 700, 3), dtype=np.uint8)).save(files[f"sub/{ODD}"])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return files


def translate(checkpoint: Path, source: Path, output: Path, *options: str) -> Result:
    return CliRunner().invoke(cli, ["translate", str(checkpoint), str(source), str(output),
                                    "--device", "cpu", "--workers", "0", *options])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


def links(html: str, attribute: str = "src") -> list[str]:
    """The ``attribute`` of every tag, unescaped and percent-decoded: paths relative to the
    page."""
    from urllib.parse import unquote

    return [unquote(unescape(v)) for v in re.findall(rf'<(?:img|a) [^>]*{attribute}="([^"]*)"',
                                                      html)]


def title(html: str) -> str:
    found = re.search(r"<title>(.*?)</title>", html)
    assert found, html[:300]
    return found.group(1)


def test_html_page_of_a_folder(pix2pix_run: Path, tmp_path: Path) -> None:
    files = write_inputs(tmp_path / "in")
    before = snapshot(tmp_path / "in")
    out = tmp_path / "out"
    result = translate(pix2pix_run, tmp_path / "in", out, "--html")
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'index.html'}" in result.output
    assert snapshot(tmp_path / "in") == before, "nothing is written into the input tree"
    assert not list(out.rglob(".tmp-*"))
    html = (out / "index.html").read_text(encoding="utf-8")

    # Named by its run; the checkpoint file is in the header below the title.
    assert title(html).startswith(f"{pix2pix_run.name}, step 4, AtoB")
    assert "step_00000004" in html
    assert "3 image(s) translated, 1 skipped" in html

    # One row per translated image: its caption, its input's copy, then its output.
    rows = re.findall(r"<tr><td class=\"name\">(.*?)</td>(.*?)</tr>", html)
    assert [unescape(caption) for caption, _ in rows] == list(files)
    for (_, cells), name in zip(rows, files, strict=True):
        shown, full = links(cells), links(cells, "href")
        assert shown == [f"{ASSETS}/inputs/{name}.jpg", name], shown
        assert full == shown
    # Every output is referenced and every reference is inside OUTPUT (the page can move).
    sources = links(html)
    outputs = {p.relative_to(out).as_posix() for p in out.rglob("*.*")
               if p.suffix in {".jpg", ".png"} and ASSETS not in p.parts}
    assert outputs == set(files) and outputs <= set(sources)
    assert all((out / s).is_file() and not s.startswith(("/", "..")) for s in sources)

    # The odd name: escaped as text, percent-encoded in links, never raw.
    assert "x&lt;&amp;&quot;y #1.png" in html and ODD not in html
    assert "x%3C%26%22y%20%231.png" in html

    # The copies of the inputs are small JPEGs of the inputs' size, or THUMBNAIL_SIDE at most.
    with Image.open(out / ASSETS / "inputs" / "a.jpg.jpg") as copy:
        assert copy.format == "JPEG" and copy.size == (77, 50)
    with Image.open(out / ASSETS / "inputs" / "sub" / f"{ODD}.jpg") as copy:
        assert max(copy.size) == THUMBNAIL_SIDE

    skipped = re.search(r'<section id="skipped">(.*?)</section>', html, flags=re.S)
    assert skipped and "Skipped (1)" in skipped.group(1)
    assert f"<code>{tmp_path / 'in' / 'broken.jpg'}</code>: cannot read image" in skipped.group(1)

    # Moved elsewhere, the page still finds every image.
    moved = shutil.move(out, tmp_path / "elsewhere" / "moved")
    assert all((Path(moved) / s).is_file() for s in sources)


def test_tiff_outputs_get_previews_and_the_direction_is_shown(cyclegan_run: Path,
                                                              tmp_path: Path) -> None:
    write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    result = translate(cyclegan_run, tmp_path / "in" / "sub", out, "--html",
                       "--direction", "BtoA", "--format", "tif")
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "BtoA" in title(html)
    assert "<th>output (BtoA)</th>" in html and 'id="skipped"' not in html
    # A browser cannot show TIFF: a PNG preview is shown, linked to the full TIFF.
    assert links(html) == [f"{ASSETS}/inputs/b.tif.jpg", f"{ASSETS}/outputs/b.tif.png",
                           f"{ASSETS}/inputs/{ODD[:-4]}.tif.jpg",
                           f"{ASSETS}/outputs/{ODD[:-4]}.tif.png"]
    assert links(html, "href")[1::2] == ["b.tif", f"{ODD[:-4]}.tif"]
    with Image.open(out / ASSETS / "outputs" / "b.tif.png") as preview:
        assert preview.format == "PNG" and preview.size == (40, 30)


def test_html_is_refused_where_it_cannot_work(pix2pix_run: Path, tmp_path: Path) -> None:
    write_inputs(tmp_path / "in")
    nested = tmp_path / "out" / ASSETS / "inputs"
    nested.mkdir(parents=True)
    shutil.copy(tmp_path / "in" / "a.jpg", nested / "a.jpg")
    cases = [
        (tmp_path / "in" / "a.jpg", tmp_path / "single.png", "OUTPUT must be a folder"),
        # Refused by the check every translation makes (tests/test_no_overwrite.py).
        (tmp_path / "in", tmp_path / "in", "lies inside the input folder"),
        (nested, tmp_path / "out", "keeps its copies of the inputs"),
    ]
    for source, output, message in cases:
        result = translate(pix2pix_run, source, output, "--html")
        assert result.exit_code == 1, result.output
        assert "error:" in result.output and message in result.output
        assert "Traceback" not in result.output and "translating" not in result.output
    assert not (tmp_path / "single.png").exists()
    assert not (tmp_path / "in" / "index.html").exists()


def test_pages_split_large_sets_and_link_anything(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    rows = [PageRow(tmp_path / "elsewhere" / f"{i}.png", folder / f"{i}.png", f"{i}.png")
            for i in range(5)]
    rows.append(PageRow(None, folder / "sub" / "50% off?.png", "<b>"))
    header = PageHeader("runs/x/step_7.safetensors", 7, "AtoB", "eval",
                        [("in/<bad>.jpg", "cannot read image: <truncated>")])
    pages = write_pages(folder, rows, header, rows_per_page=2)
    assert pages == [folder / page_name(n) for n in (1, 2, 3)]
    assert [p.name for p in pages] == ["index.html", "index_2.html", "index_3.html"]
    texts = [p.read_text(encoding="utf-8") for p in pages]
    for number, html in enumerate(texts, start=1):
        assert len(re.findall(r"<tr><td", html)) == 2
        nav = re.findall(r'<nav class="pages">(.*?)</nav>', html)
        assert nav and f"<strong>{number}</strong>" in nav[0]
        assert {f'href="{page_name(n)}"' for n in (1, 2, 3) if n != number} <= set(
            re.findall(r'href="index[^"]*"', nav[0]))
        assert "6 image(s) translated, 1 skipped" in html
    assert 'id="skipped"' in texts[0] and "&lt;bad&gt;.jpg" in texts[0]
    assert "&lt;truncated&gt;" in texts[0] and "<bad>" not in texts[0]
    assert 'id="skipped"' not in texts[1] and 'href="index.html#skipped"' in texts[1]
    assert links(texts[0])[:2] == ["../elsewhere/0.png", "0.png"]  # relative, even outside
    assert 'src="sub/50%25%20off%3F.png"' in texts[2]
    assert "input not available" in texts[2] and "<td class=\"name\">&lt;b&gt;</td>" in texts[2]

    empty = write_pages(tmp_path / "new", [], PageHeader("c", 0, "AtoB", "paper"))
    html = empty[0].read_text(encoding="utf-8")
    assert empty == [tmp_path / "new" / "index.html"] and "no image was translated" in html
    assert "<nav" not in html and "<table" not in html


def test_translate_page_in_chromium(chromium: str, pix2pix_run: Path, tmp_path: Path) -> None:
    files = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    result = translate(pix2pix_run, tmp_path / "in", out, "--html")
    assert result.exit_code == 0, result.output
    # Opened after the folder moved: every image still loads from its relative link.
    page = Path(shutil.move(out, tmp_path / "moved")) / "index.html"
    dom = browse(chromium, page, tmp_path / "profile", "--window-size=1280,2400", "--dump-dom")
    states = re.findall(r'<img [^>]*data-state="(\w+)"', dom)
    assert len(re.findall(r"<img ", dom)) == len(states) == 2 * len(files)
    assert set(states) == {"loaded"}, states
    assert "image missing" not in dom.replace('"image missing: "', "")
    assert "x&lt;&amp;\"y #1.png" in dom or "x&lt;&amp;&quot;y #1.png" in dom
    assert "broken.jpg" in dom
