"""``imtrans demo``: the browser page, driven in a real headless Chromium, and ``--write-app``.

The page is launched in this process on a free port; Playwright drives the system Chromium (no
browser is downloaded): a sample photo is uploaded, translated, and the output image the page
shows is fetched and compared with ``imtrans translate``'s file, pixel for pixel. The written
app is imported in a fresh Python that must not import imtrans, and gives the same pixels.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, cli_error, train_tiny
from PIL import Image

from imtrans.cli.app import cli
from imtrans.samples import sample_root

ARTIFACTS = ROOT / "test-artifacts"
SAMPLE, SECOND = sorted((sample_root("monet2photo") / "testA").glob("*.jpg"))[:2]


def translated_by_cli(run: Path, image: Path, folder: Path, *args: str) -> np.ndarray:
    """``imtrans translate RUN IMAGE folder/out.png ARGS``'s output pixels."""
    out = folder / "translate" / "out.png"
    result = CliRunner().invoke(cli, ["translate", str(run), str(image), str(out),
                                      "--workers", "0", *args])
    assert result.exit_code == 0, result.output
    return np.asarray(Image.open(out))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step CycleGAN run that kept a moving average of its weights."""
    return train_tiny(tmp_path_factory.mktemp("ema"), "cyclegan_photo2monet", train__ema=0.5)


@pytest.fixture(scope="module")
def served(ema_run: Path) -> Iterator[tuple[str, Any]]:
    """The demo page of ``ema_run``, listening on a free port; yields its URL and model."""
    pytest.importorskip("gradio")
    from imtrans.inference.demo_app import DemoModel, build_demo

    model = DemoModel.open(ema_run, device="cpu")
    page = build_demo(model)
    port = free_port()
    page.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port,
                share=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}", model
    finally:
        page.close()


def test_page_translates_an_upload_as_translate_does(served: tuple[str, Any], chromium: str,
                                                     ema_run: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    url, model = served
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.locator("#translate").wait_for(timeout=30_000)  # the page is built by script
            page.wait_for_function("document.title.startsWith('imtrans demo')")
            assert page.title() == "imtrans demo: cyclegan_photo2monet, step 4"
            # Only what the checkpoint has: its trainer's two directions, EMA and raw weights.
            labels = page.locator("#direction label").all_inner_texts()
            assert [label.strip() for label in labels] == ["AtoB", "BtoA"]
            weights = page.locator("#weights label").all_inner_texts()
            assert [label.strip() for label in weights] == ["ema", "raw"]
            page.locator("#inputs input[type=file]").set_input_files([str(SAMPLE), str(SECOND)])
            page.locator("#direction label", has_text="BtoA").click()
            page.locator("#weights label", has_text="raw").click()
            page.locator("#translate").click()
            images = page.locator("#results img")
            images.nth(3).wait_for(timeout=30_000)
            page.wait_for_function("document.querySelector('#status')"
                                   ".innerText.includes('Translated 2 image(s) BtoA')")
            sources = [images.nth(i).get_attribute("src") for i in range(images.count())]
            shown = [np.asarray(Image.open(BytesIO(page.request.get(
                src if src.startswith("http") else url + src).body())))
                for src in sources]
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "demo-page.png"
            shot.unlink(missing_ok=True)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert len(shown) == 4  # each input beside its output
    for number, image in enumerate((SAMPLE, SECOND)):
        expected = translated_by_cli(ema_run, image, tmp_path / str(number), "--direction",
                                     "BtoA", "--weights", "raw")
        assert np.array_equal(shown[2 * number], np.asarray(Image.open(image).convert("RGB")))
        output = shown[2 * number + 1]
        assert output.shape == expected.shape and np.array_equal(output, expected)
    # Loaded lazily: the one translator asked for, none for the other direction or weights.
    assert model.loaded == (("BtoA", "raw", "fp32", "paper"),)
    small = Image.open(shot).convert("RGB").resize((320, 250))
    assert len(small.getcolors(maxcolors=1 << 16) or []) > 100, "the screenshot looks blank"


def test_page_translates_a_clip(served: tuple[str, Any], chromium: str,
                               tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    ffmpeg = pytest.importorskip("imageio_ffmpeg")
    from imtrans.inference.video import write_video

    frames = [np.asarray(Image.open(path).convert("RGB").resize((64, 48)))
              for path in (SAMPLE, SECOND) * 3]
    clip = tmp_path / "clip.webm"
    write_video(clip, frames, 6)
    url, model = served
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(url)
            page.locator("#translate_clip").wait_for(timeout=30_000)
            page.locator("#clip input[type=file]").set_input_files(str(clip))
            page.locator("#clip video").wait_for(timeout=30_000)  # uploaded
            page.locator("#translate_clip").click()
            page.wait_for_function("document.querySelector('#clip_status')"
                                   ".innerText.includes('Translated the clip AtoB')")
            video = page.locator("#clip_output video")
            video.wait_for(timeout=30_000)
            src = video.get_attribute("src")
            body = page.request.get(src if src.startswith("http") else url + src).body()
        finally:
            browser.close()
    shown = tmp_path / "shown.webm"
    shown.write_bytes(body)
    reader = ffmpeg.read_frames(str(shown))
    meta = next(reader)
    count = sum(1 for _ in reader)
    assert count == len(frames) and tuple(meta["size"]) == (64, 48) and meta["fps"] == 6
    # In eval mode: a translator of its own, beside none for the images yet.
    assert ("AtoB", "ema", "fp32", "eval") in model.loaded


def test_page_choices_follow_the_checkpoint(cyclegan_run: Path, ema_run: Path) -> None:
    from imtrans.inference.demo_app import DemoModel

    plain = DemoModel.open(cyclegan_run)
    averaged = DemoModel.open(ema_run)
    assert plain.weights == ("raw",) and averaged.weights == ("ema", "raw")
    assert plain.directions == ("AtoB", "BtoA")
    assert plain.loaded == ()  # opening reads the header only
    assert plain.precisions[0] == "fp32"
    # EMA and raw weights are different networks, each cached once loaded.
    ema = averaged.translate_file(SAMPLE, "AtoB", "ema")
    raw = averaged.translate_file(SAMPLE, "AtoB", "raw")
    assert not np.array_equal(ema.shown_output, raw.shown_output)
    assert averaged.translator("AtoB", "ema") is averaged.translator("AtoB", "ema")
    assert averaged.translate_file(__file__, "AtoB", "raw").skipped  # not an image: said


def test_16_bit_precisions_run_and_stay_close_to_fp32(ema_run: Path) -> None:
    from imtrans.inference.demo_app import DemoModel

    model = DemoModel.open(ema_run, device="cpu")
    if len(model.precisions) == 1:
        pytest.skip("this CPU runs no 16-bit type")
    full = model.translate_file(SAMPLE, "AtoB", "raw").shown_output.astype(int)
    for precision in model.precisions[1:]:
        half = model.translate_file(SAMPLE, "AtoB", "raw", precision).shown_output.astype(int)
        # Another number type: not fp32's bytes, within a few 0-255 levels (bf16: 5 measured).
        assert 0 < np.abs(half - full).max() <= 8, precision
        assert model.translator("AtoB", "raw", precision).precision_name == precision


def test_demo_listens_on_localhost_and_never_shares(ema_run: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    gradio = pytest.importorskip("gradio")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(gradio.Blocks, "launch", lambda self, **kwargs: calls.append(kwargs))
    monkeypatch.setattr(gradio.Blocks, "block_thread", lambda self: None)
    result = CliRunner().invoke(cli, ["demo", str(ema_run)])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    assert calls[0]["server_name"] == "127.0.0.1" and calls[0]["server_port"] == 7860
    assert calls[0]["share"] is False
    assert "imtrans demo: cyclegan_photo2monet, step 4" in result.output
    assert "open http://127.0.0.1:7860" in result.output
    result = CliRunner().invoke(cli, ["demo", str(ema_run), "--host", "0.0.0.0",
                                      "--port", "8123"])
    assert calls[1]["server_name"] == "0.0.0.0" and calls[1]["server_port"] == 8123
    assert calls[1]["share"] is False


def test_a_port_in_use_is_one_line(ema_run: Path) -> None:
    pytest.importorskip("gradio")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["demo", str(ema_run), "--port", str(port)])
    assert cli_error(result) == (f"error: cannot listen on 127.0.0.1:{port}: the port is in "
                                 "use, or the address is not one of this machine's; choose "
                                 "another --port or --host")
    assert "open http" not in result.output


def test_missing_gradio_is_one_line(ema_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    result = CliRunner().invoke(cli, ["demo", str(ema_run)])
    assert cli_error(result) == ("error: imtrans demo needs the demo extra: "
                                 "pip install 'imtrans[demo]'")


def test_commands_never_import_gradio() -> None:
    # The command line ends its process itself: the probe prints from an atexit handler.
    probe = ("import atexit, sys, runpy; sys.argv = ['imtrans', *sys.argv[1:]]\n"
             "atexit.register(lambda: print('loaded:', sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('gradio', 'torch'))))\n"
             "runpy.run_module('imtrans', run_name='__main__', alter_sys=True)")
    for args in (["demo", "--help"], ["translate", "--help"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                              text=True, cwd=ROOT, timeout=120, check=True)
        assert "--write-app" in done.stdout or args[0] != "demo"
        assert done.stdout.splitlines()[-1] == "loaded: []"


#: Imports the written app in a fresh Python, translates one image with it, and says which
#: imtrans modules were loaded (none may be).
APP_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import app
import numpy as np
from PIL import Image
out = app.translate(app.read_image(sys.argv[2], "AtoB"), "AtoB")
Image.fromarray(out).save(sys.argv[3])
import gradio
print(json.dumps({"blocks": isinstance(app.demo, gradio.Blocks),
                  "title": app.demo.title,
                  "imtrans": sorted(m for m in sys.modules if m.split(".")[0] == "imtrans")}))
"""


def test_write_app_runs_without_imtrans(cyclegan_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    folder = tmp_path / "space"
    result = CliRunner().invoke(cli, ["demo", str(cyclegan_run), "--write-app", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"wrote {folder}" in result.output
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "app.py", "generator_AtoB.pt", "generator_BtoA.pt", "requirements.txt"]
    readme = (folder / "README.md").read_text()
    front = readme.split("---\n")[1]
    assert "sdk: gradio\n" in front and "app_file: app.py\n" in front
    assert 'title: "cyclegan_photo2monet"' in front and "python app.py" in readme
    needs = [line.split(">=")[0] for line in (folder / "requirements.txt").read_text().split()]
    assert needs == ["torch", "gradio", "pillow", "numpy"]

    written = tmp_path / "app-out.png"
    done = subprocess.run(
        [sys.executable, "-c", "import json\n" + APP_PROBE, str(folder), str(SAMPLE),
         str(written)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"blocks": True, "title": "imtrans demo: cyclegan_photo2monet, step 4",
                      "imtrans": []}
    expected = translated_by_cli(cyclegan_run, SAMPLE, tmp_path).astype(int)
    got = np.asarray(Image.open(written)).astype(int)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1


def test_write_app_keeps_out_of_runs_and_full_folders(cyclegan_run: Path,
                                                      tmp_path: Path) -> None:
    inside = cyclegan_run / "space"
    message = cli_error(CliRunner().invoke(cli, ["demo", str(cyclegan_run),
                                                 "--write-app", str(inside)]))
    assert "lies in the run directory" in message and not inside.exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    message = cli_error(CliRunner().invoke(cli, ["demo", str(cyclegan_run),
                                                 "--write-app", str(full)]))
    assert "is not empty" in message
    assert [p.name for p in full.iterdir()] == ["notes.txt"]
    result = CliRunner().invoke(cli, ["demo", str(cyclegan_run), "--write-app", str(full),
                                      "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (full / "notes.txt").read_text() == "mine" and (full / "app.py").is_file()
