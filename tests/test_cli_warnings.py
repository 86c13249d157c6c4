"""The console script shows imtrans's warnings as ``warning:`` lines, each once, without
Python's source file, line number and line of code."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image

from imtrans.cli.output import warnings_as_lines
from imtrans.data.folders import SkippedImageWarning


def test_imtrans_warnings_are_lines_once_and_others_unchanged(
        capsys: pytest.CaptureFixture[str]) -> None:
    shown_before: list[tuple[str, type[Warning]]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, *rest: shown_before.append(
            (str(message), category))
        with warnings_as_lines():
            for _ in range(2):  # the checks before a run and the run itself
                warnings.warn("skipping a.png: cannot read image", SkippedImageWarning,
                              stacklevel=1)
            warnings.warn("another package's", DeprecationWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.count("warning: skipping a.png: cannot read image\n") == 1
    assert "SkippedImageWarning" not in err
    assert shown_before == [("another package's", DeprecationWarning)]  # shown as before


def test_the_console_script_prints_a_skipped_image_as_one_line(pix2pix_run: Path,
                                                               tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32), (90, 40, 200)).save(photos / "a.png")
    (photos / "b.png").write_text("not an image")
    done = subprocess.run([sys.executable, "-m", "imtrans", "translate", str(pix2pix_run),
                           str(photos), str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, COLUMNS="200"))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "b.png" in line]
    assert lines and all(line.startswith("warning: ") for line in lines), done.stderr
    assert "SkippedImageWarning" not in done.stderr and ".py:" not in done.stderr
    assert (tmp_path / "out" / "a.png").is_file()
