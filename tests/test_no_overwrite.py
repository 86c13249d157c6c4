"""No command replaces or feeds back into its own inputs, and a failed write is an error.

Each case runs the command line, checks that it refuses with one error line and exit 1 before
writing anything, and that every input is byte for byte what it was.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import cli_error
from PIL import Image

from imtrans.cli import cli
from imtrans.runs.checkpoints.lookup import find_checkpoint
from imtrans.runs.directory import RunDir


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(*roots: Path) -> dict[Path, bytes]:
    """Every file under ``roots`` (or the file itself) with its bytes."""
    files: dict[Path, bytes] = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        files |= {path: path.read_bytes() for path in paths}
    return files


def photos(folder: Path, *names: str, size: int = 32) -> Path:
    """A folder of small images named ``names`` (``sub/c.png`` makes a sub-folder)."""
    for number, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (size, size), (40 * number, 90, 200)).save(path)
    return folder


def disk_full_on_save(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every image save write its file and then fail as a full disk does (works as root,
    where a read-only folder does not)."""
    real_save = Image.Image.save

    def full_disk(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        real_save(self, fp, *args, **kwargs)  # the bytes are on disk, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full_disk)


@pytest.fixture
def checkpoint(pix2pix_run: Path) -> Path:
    return find_checkpoint(pix2pix_run)


# --- translate --------------------------------------------------------------------------------


def test_translate_into_its_own_folder_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "a.png", "sub/b.png")
    before = snapshot(folder)
    error = cli_error(invoke("translate", checkpoint, folder, folder, "--workers", 0))
    assert f"output {folder} lies inside the input folder {folder}" in error
    assert snapshot(folder) == before


def test_translate_a_file_onto_itself_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    image = photos(tmp_path, "a.jpg") / "a.jpg"
    before = snapshot(image)
    error = cli_error(invoke("translate", checkpoint, image, image, "--workers", 0))
    assert f"output {image} is the input {image}" in error
    # A file given as a folder output writes OUTPUT/a.jpg: the input again.
    error = cli_error(invoke("translate", checkpoint, image, tmp_path, "--workers", 0))
    assert "is the input" in error
    assert snapshot(image) == before


def test_translate_into_a_sub_folder_of_its_input_is_refused(checkpoint: Path,
                                                             tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "a.png")
    before = snapshot(folder)
    error = cli_error(invoke("translate", checkpoint, folder, folder / "out", "--workers", 0))
    assert "lies inside the input folder" in error and "read recursively" in error
    assert snapshot(folder) == before and not (folder / "out").exists()
    # A recursive glob searches its folder the same way.
    pattern = f"{folder}/**/*.png"
    assert "lies inside the input folder" in cli_error(
        invoke("translate", checkpoint, pattern, folder / "out", "--workers", 0))
    # A one-level glob reads back what it matches: outputs in the same folder, new names.
    assert "matches the input pattern" in cli_error(
        invoke("translate", checkpoint, f"{folder}/*", folder, "--format", "jpg",
               "--workers", 0))
    assert snapshot(folder) == before


def test_translate_through_links_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "a.png", "b.png")
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    os.link(folder / "a.png", tmp_path / "hard.png")  # one file, two names
    before = snapshot(folder)
    assert "lies inside the input folder" in cli_error(
        invoke("translate", checkpoint, folder, tmp_path / "link", "--workers", 0))
    assert "is the input" in cli_error(
        invoke("translate", checkpoint, folder / "a.png", tmp_path / "hard.png",
               "--workers", 0))
    assert snapshot(folder) == before


def test_two_inputs_to_one_output_name_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "a.jpg", "a.png")
    error = cli_error(invoke("translate", checkpoint, folder, tmp_path / "out", "--format",
                             "png", "--workers", 0))
    assert f"inputs {folder / 'a.jpg'} and {folder / 'a.png'} would both be written to " \
           f"{tmp_path / 'out' / 'a.png'}" in error
    assert not (tmp_path / "out").exists()  # refused before any work


def test_translate_write_failure_is_an_error(checkpoint: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = photos(tmp_path / "photos", "a.png", "b.png")
    out = tmp_path / "out"
    out.mkdir()
    disk_full_on_save(monkeypatch)
    result = invoke("translate", checkpoint, folder, out, "--workers", 0)
    error = cli_error(result)
    assert f"cannot write {out}" in error and os.strerror(errno.ENOSPC) in error
    assert "skipped" not in result.output
    assert list(out.iterdir()) == []  # no partial file, no temporary left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_translate_into_a_read_only_folder_is_an_error(checkpoint: Path,
                                                       tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "a.png")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = invoke("translate", checkpoint, folder, out, "--workers", 0)
        assert f"cannot write {out / 'a.png'}" in cli_error(result)
        assert "skipped" not in result.output and list(out.iterdir()) == []
    finally:
        out.chmod(0o755)


# --- export -----------------------------------------------------------------------------------


def test_export_over_the_checkpoint_is_refused(pix2pix_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(pix2pix_run, run, ignore=shutil.ignore_patterns("eval", "export"))
    checkpoint = find_checkpoint(run)
    before = snapshot(run / "checkpoints")
    error = cli_error(invoke("export", checkpoint, "--format", "torchscript", "-o", checkpoint))
    assert f"output {checkpoint} is the input {checkpoint}" in error
    error = cli_error(invoke("export", run, "--format", "torchscript", "-o",
                             run / "checkpoints" / "generator.pt"))
    assert "the run's checkpoints folder" in error
    assert snapshot(run / "checkpoints") == before


# --- eval -------------------------------------------------------------------------------------


def test_eval_images_into_the_data_are_refused(pix2pix_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(_data_root(pix2pix_run), data)
    before = snapshot(data)
    error = cli_error(invoke("eval", pix2pix_run, "--device", "cpu", "--metrics", "psnr",
                             "--data", data, "--save-images", data / "val" / "out"))
    assert "lies inside the input folder" in error and "the dataset evaluated" in error
    assert snapshot(data) == before


def _data_root(run: Path) -> Path:
    """The dataset folder a tiny run was trained on (the bundled sample)."""
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.data.resolve import resolve_root

    recipe = load_recipe(run / "recipe.toml")
    return resolve_root(recipe.data.kwargs["root"], recipe.data.catalog).path


# --- data combine -----------------------------------------------------------------------------


def test_combine_into_its_inputs_is_refused(tmp_path: Path) -> None:
    a = photos(tmp_path / "A", "1.png", "2.png")
    b = photos(tmp_path / "B", "1.png", "2.png")
    before = snapshot(a, b)
    for out in (a, b, a / "out", b / "train"):
        error = cli_error(invoke("data", "combine", a, b, out))
        assert "lies inside the input folder" in error
    assert snapshot(a, b) == before


def test_combine_over_an_input_file_inside_out_is_refused(tmp_path: Path) -> None:
    # B lies inside OUT: A's sub/1.png would be written to OUT/sub/1.png, which is B's 1.png.
    a = photos(tmp_path / "A", "1.png", "sub/1.png")
    out = tmp_path / "OUT"
    b = photos(out / "sub", "1.png", "sub/1.png")
    before = snapshot(a, b)
    error = cli_error(invoke("data", "combine", a, b, out))
    assert f"output {out / 'sub' / '1.png'} is the input {b / '1.png'}" in error
    assert snapshot(a, b) == before and not (out / "1.png").exists()


def test_combine_write_failure_is_an_error(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    a = photos(tmp_path / "A", "1.png")
    b = photos(tmp_path / "B", "1.png")
    out = tmp_path / "OUT"
    disk_full_on_save(monkeypatch)
    error = cli_error(invoke("data", "combine", a, b, out))
    assert os.strerror(errno.ENOSPC) in error
    assert list(out.iterdir()) == []  # no half image, no temporary left


# --- report -----------------------------------------------------------------------------------


def test_report_over_a_run_file_is_refused(pix2pix_run: Path, cyclegan_run: Path,
                                           tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(pix2pix_run, first)
    shutil.copytree(cyclegan_run, second)
    before = snapshot(first, second)
    for target in (RunDir(first).metrics, find_checkpoint(second), RunDir(first).report):
        error = cli_error(invoke("report", first, second, "-o", target))
        assert "a run directory being compared" in error
    assert snapshot(first, second) == before
