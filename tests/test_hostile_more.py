"""Careless and hostile use, second round: new cases of each class the first round fixed.

Each test makes its hostile files in ``tmp_path`` and runs the command line: a FIFO, a file or
a link loop where a run directory is expected; an official folder whose file is a FIFO; an
import into another run's folders or through a linked ``checkpoints/``; an old-format ``.pth``
whose storage lies about its size. What is checked is the one ``error:`` line (what the thing
is, named), exit status 1, and that nothing was written where it must not be.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import shutil
import struct
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import cli_error

from imtrans.cli import cli
from imtrans.nn import generators


def _error(*args: str) -> str:
    return cli_error(CliRunner().invoke(cli, list(args)))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _not_folders(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Names that are not folders, and what the error must say each is."""
    fifo, file, loop = tmp_path / "fifo", tmp_path / "file.txt", tmp_path / "loop1"
    os.mkfifo(fifo)
    file.write_text("notes\n")
    os.symlink(tmp_path / "loop2", loop)
    os.symlink(loop, tmp_path / "loop2")
    dangling = tmp_path / "dangling"
    os.symlink(tmp_path / "nowhere", dangling)
    return {"fifo": (fifo, "is a FIFO (named pipe), not a folder"),
            "file": (file, "is a file, not a folder"),
            "loop": (loop, "is a symbolic link loop"),
            "dangling": (dangling, "is a symbolic link to"),
            "device": (Path("/dev/null"), "is a character device, not a folder")}


# --- report: a run directory that is not a folder says what it is ----------------------------

def test_report_says_what_a_run_directory_that_is_not_a_folder_is(
        tmp_path: Path, pix2pix_run: Path) -> None:
    for name, (path, said) in _not_folders(tmp_path).items():
        line = _error("report", str(path))
        assert said in line and str(path) in line, (name, line)
        assert "does not exist" not in line or name == "dangling", (name, line)
        # Among several runs too (the comparison page).
        line = _error("report", str(pix2pix_run), str(path), "-o", str(tmp_path / "c.html"))
        assert said in line, (name, line)
    assert not (tmp_path / "c.html").exists()
    assert _error("report", str(tmp_path / "missing")).endswith(
        "does not exist (expected a folder such as runs/<recipe name>/ that training wrote)")


# --- import: an official folder whose file is not a regular file is named --------------------

def test_an_official_folder_whose_file_is_a_fifo_names_it(tmp_path: Path) -> None:
    folder = tmp_path / "official"
    folder.mkdir()
    os.mkfifo(folder / "latest_net_G.pth")
    line = _error("import", str(folder), str(tmp_path / "run"))
    assert line == (f"error: official checkpoint {folder / 'latest_net_G.pth'} is a FIFO "
                    "(named pipe), not a regular file"), line
    # A link loop of an official name, beside a good file of another epoch, is named too.
    os.unlink(folder / "latest_net_G.pth")
    os.symlink(folder / "latest_net_G.pth", folder / "latest_net_G.pth")
    line = _error("import", str(folder), str(tmp_path / "run"))
    assert "latest_net_G.pth is a symbolic link loop" in line, line
    # An options file that is a FIFO is named too, not left out (the import then guessed).
    os.unlink(folder / "latest_net_G.pth")
    torch.save(generators.resnet_6blocks(ngf=4).state_dict(), folder / "latest_net_G.pth")
    os.mkfifo(folder / "train_opt.txt")
    line = _error("import", str(folder), str(tmp_path / "run"))
    assert line == (f"error: file of official options {folder / 'train_opt.txt'} is a FIFO "
                    "(named pipe), not a regular file"), line
    assert not (tmp_path / "run").exists()


# --- import: a run directory's folders and links are never written into ----------------------

def _official_file(tmp_path: Path) -> Path:
    path = tmp_path / "latest_net_G.pth"
    torch.save(generators.resnet_6blocks(ngf=4).state_dict(), path)
    return path


def test_import_never_writes_into_another_runs_folders(
        tmp_path: Path, pix2pix_run: Path) -> None:
    source = _official_file(tmp_path)
    before = _snapshot(pix2pix_run)
    # The run is shared by the session's tests: an earlier eval may have made eval/.
    folders = sorted(str(p.relative_to(pix2pix_run)) for p in pix2pix_run.rglob("*")
                     if p.is_dir())
    for inside in ("checkpoints", "samples", "eval/deep", "tb"):
        line = _error("import", str(source), str(pix2pix_run / inside))
        assert f"of the run directory {pix2pix_run}" in line, (inside, line)
    # The same through a link to the run's checkpoints folder.
    link = tmp_path / "elsewhere"
    os.symlink(pix2pix_run / "checkpoints", link)
    line = _error("import", str(source), str(link))
    assert "checkpoints of the run directory" in line, line
    assert _snapshot(pix2pix_run) == before
    assert sorted(str(p.relative_to(pix2pix_run)) for p in pix2pix_run.rglob("*")
                  if p.is_dir()) == folders


def test_import_never_writes_through_links_in_its_run_directory(tmp_path: Path) -> None:
    source = _official_file(tmp_path)
    user = tmp_path / "user_folder"
    user.mkdir()
    (user / "mine.txt").write_text("mine\n")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(user, run / "checkpoints")
    line = _error("import", str(source), str(run))
    assert "checkpoints is a symbolic link" in line and "never writes" in line, line
    assert sorted(p.name for p in user.iterdir()) == ["mine.txt"]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]
    # A user's file of a run file's name is not replaced either.
    os.unlink(run / "checkpoints")
    (run / "environment.json").write_text("{\"mine\": 1}\n")
    line = _error("import", str(source), str(run))
    assert "environment.json" in line and "already holds" in line, line
    assert (run / "environment.json").read_text() == "{\"mine\": 1}\n"


def test_models_download_refuses_another_runs_folder_before_downloading(
        tmp_path: Path, pix2pix_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMTRANS_MODELS_URL", "http://127.0.0.1:9")  # never reached
    before = _snapshot(pix2pix_run)
    for inside in ("checkpoints", "samples"):
        line = _error("models", "download", "facades_photo2label", "--dir",
                      str(pix2pix_run / inside), "--timeout", "1")
        assert f"of the run directory {pix2pix_run}" in line, line
    assert _snapshot(pix2pix_run) == before
    assert not (pix2pix_run / "checkpoints" / "facades_photo2label").exists()
    # Its download folder, a link to a user's folder, is not written through.
    user = tmp_path / "user"
    user.mkdir()
    (tmp_path / "runs" / "facades_photo2label").mkdir(parents=True)
    os.symlink(user, tmp_path / "runs" / "facades_photo2label" / "official")
    line = _error("models", "download", "facades_photo2label", "--dir", str(tmp_path / "runs"),
                  "--timeout", "1")
    assert "official is a symbolic link" in line, line
    assert list(user.iterdir()) == []


# --- an old-format .pth whose storage lies about its size: one clean line --------------------

def test_a_legacy_pth_whose_storage_lies_about_its_size_is_one_clean_line(
        tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G.pth"
    torch.save(generators.resnet_6blocks(ngf=4).state_dict(), path,
               _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    stream = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol, system info
        pickle.load(stream)
    for _ in pickletools.genops(stream):  # the state dict's pickle, not run
        pass
    pickle.load(stream)  # the storage keys
    at = stream.tell()  # the first storage: its element count, then its bytes
    count = struct.unpack("<q", data[at:at + 8])[0]
    path.write_bytes(data[:at] + struct.pack("<q", count + 1000) + data[at + 8:])
    line = _error("import", str(path), str(tmp_path / "run"))
    assert line == (f"error: {path} is not a readable PyTorch file: a tensor's storage holds "
                    "another number of bytes than the file declares for it (a damaged or "
                    "altered file)"), line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("reason", ["storage has wrong byte size: expected %ld got %ld4000\x00",
                                    "x" * 5000])
def test_an_unreadable_pth_reason_is_printable_and_bounded(
        tmp_path: Path, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _official_file(tmp_path)

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError(reason)
    monkeypatch.setattr(torch, "load", fail)
    line = _error("import", str(path), str(tmp_path / "run"))
    assert len(line) < 400 and "%ld" not in line and "\x00" not in line, line


# --- downloads never write through a link planted as their partial file ---------------------

def test_a_download_never_writes_through_a_linked_part_file(tmp_path: Path) -> None:
    from imtrans.data.download import download
    from imtrans.errors import DataError
    from tests.http_server import serve

    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes\n")
    dest = tmp_path / "dl" / "file.bin"
    dest.parent.mkdir()
    os.symlink(notes, dest.parent / "file.bin.part")
    with serve() as server:
        server.body = b"x" * 5000
        with pytest.raises(DataError, match=r"file\.bin\.part is a symbolic link"):
            download(server.url, dest, timeout=5)
        assert server.paths == []  # refused before asking the server
    assert notes.read_bytes() == b"my notes\n"
    # A hard link to the user's file is refused the same way.
    os.unlink(dest.parent / "file.bin.part")
    os.link(notes, dest.parent / "file.bin.part")
    with serve() as server:
        server.body = b"x" * 5000
        with pytest.raises(DataError, match=r"a hard link"):
            download(server.url, dest, timeout=5)
    assert notes.read_bytes() == b"my notes\n"


# --- eval: results never written through a linked eval/ folder, never blocked on a FIFO --------

def _eval(run: Path, *more: str) -> object:
    return CliRunner().invoke(cli, ["eval", str(run), "--metrics", "psnr", "--max-images", "2",
                                    "--device", "cpu", *more])


def test_eval_never_writes_results_through_a_linked_eval_folder(
        tmp_path: Path, pix2pix_run: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pix2pix_run, run, symlinks=True)
    shutil.rmtree(run / "eval", ignore_errors=True)
    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("mine\n")
    os.symlink(user, run / "eval")
    line = cli_error(_eval(run))  # type: ignore[arg-type]
    assert f"{run / 'eval'} is a symbolic link" in line and "never writes" in line, line
    assert sorted(p.name for p in user.iterdir()) == ["keep.txt"]


def test_eval_skips_a_result_file_that_is_a_fifo_instead_of_blocking(
        tmp_path: Path, pix2pix_run: Path) -> None:
    import shutil
    import subprocess
    import sys

    run = tmp_path / "run"
    shutil.copytree(pix2pix_run, run, symlinks=True)
    shutil.rmtree(run / "eval", ignore_errors=True)
    (run / "eval").mkdir()
    stem = sorted((run / "checkpoints").glob("step_*.safetensors"))[-1].stem
    fifo = run / "eval" / f"{stem}_val_AtoB.json"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "imtrans", "eval", str(run), "--metrics", "psnr",
                           "--max-images", "2", "--device", "cpu"], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    written = sorted(p.name for p in (run / "eval").iterdir() if p.is_file())
    assert len(written) == 1 and written[0].startswith(f"{stem}_val_AtoB-"), written
    assert fifo.exists() and not fifo.is_file()  # left as it was


def test_a_best_record_that_is_a_fifo_or_huge_is_not_read(tmp_path: Path) -> None:
    import threading

    from imtrans.evaluation.periodic import read_best
    from imtrans.runs.directory import RunDir

    run = RunDir(tmp_path)
    run.best_record.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(run.best_record)
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.append(read_best(run)), daemon=True)
    reader.start()
    reader.join(20)
    assert found == [None]  # not blocked on the FIFO
    os.unlink(run.best_record)
    run.best_record.write_text('{"value": 1, "pad": "' + "x" * (2 << 20) + '"}')
    assert read_best(run) is None
    run.best_record.write_text('{"value": 1}')
    assert read_best(run) == {"value": 1}


# --- sizes whose element count overflows: one line or bounded work, never a traceback ---------

def test_a_tile_or_check_size_past_any_tensor_is_not_a_traceback(
        tmp_path: Path, pix2pix_run: Path) -> None:
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32)).save(images / "a.png")
    result = CliRunner().invoke(cli, ["translate", str(pix2pix_run), str(images),
                                      str(tmp_path / "out"), "--tile", "1000000000",
                                      "--device", "cpu"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert [p.name for p in (tmp_path / "out").glob("*.png")] == ["a.png"]
    line = _error("export", str(pix2pix_run), "--format", "torchscript", "-o",
                  str(tmp_path / "g.pt"), "--check-size", "1000000000")
    assert line.startswith("error: --check-size 1000000000: checking the export on "
                           "1000000000x1000000000 inputs needs at least"), line
    assert not (tmp_path / "g.pt").exists()


# --- data combine: an input folder that is not a folder says what it is ----------------------

def test_combine_says_what_an_input_that_is_not_a_folder_is(tmp_path: Path) -> None:
    from PIL import Image

    good = tmp_path / "B"
    good.mkdir()
    Image.new("RGB", (32, 32)).save(good / "a.png")
    for name, (path, said) in _not_folders(tmp_path).items():
        if name == "file":
            continue  # click's own "is a file" already says it
        result = CliRunner().invoke(cli, ["data", "combine", str(path), str(good),
                                          str(tmp_path / "out")])
        assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
        assert said in result.output, (name, result.output)
    assert not (tmp_path / "out").exists()


# --- a dataset folder that is a FIFO or a link loop is named, never replaced by the sample -----

def test_eval_data_that_is_not_a_folder_is_named_not_replaced_by_the_sample(
        tmp_path: Path, pix2pix_run: Path) -> None:
    for name, (path, said) in _not_folders(tmp_path).items():
        if name == "file":
            continue  # click's own "is a file" already says it
        line = cli_error(_eval(pix2pix_run, "--data", str(path)))  # type: ignore[arg-type]
        assert line.startswith(f"error: dataset folder {path} {said}"), (name, line)


# --- --set values that no machine builds: one line before any network is laid out ------------

@pytest.mark.parametrize("sets, said", [
    (["generator.ngf=100000000"], "generator.ngf = 100000000"),
    (["generator.name=unet", "generator.num_downs=100000"], "generator.num_downs = 100000"),
    (["discriminator.n_layers=5000"], "discriminator.n_layers = 5000"),
], ids=["ngf-overflows", "num-downs", "n-layers"])
def test_network_sizes_no_machine_builds_are_one_line_at_once(
        tmp_path: Path, sets: list[str], said: str) -> None:
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    args = [a for s in sets for a in ("--set", s)]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "imtrans", "validate",
                           str(ROOT / "recipes" / "pix2pix_edges2shoes.toml"), *args],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and said in lines[0], done.stderr
    assert time.monotonic() - started < 30


# --- an output under a FIFO, a report of a run whose recipe is a FIFO: said what it is --------

def test_an_output_under_a_fifo_and_a_fifo_recipe_are_named(
        tmp_path: Path, pix2pix_run: Path) -> None:
    import shutil

    from PIL import Image

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(image)
    line = _error("translate", str(pix2pix_run), str(image), str(fifo / "sub"))
    assert line == (f"error: output {fifo / 'sub' / 'a.png'} cannot be written: {fifo} is a "
                    "FIFO (named pipe), not a folder"), line
    run = tmp_path / "run"
    shutil.copytree(pix2pix_run, run, symlinks=True)
    os.unlink(run / "recipe.toml")
    os.mkfifo(run / "recipe.toml")
    line = _error("report", str(run))
    assert line == (f"error: the run's recipe {run / 'recipe.toml'} is a FIFO (named pipe), "
                    "not a regular file"), line


def test_import_refuses_a_depth_no_image_fits_before_laying_it_out(tmp_path: Path) -> None:
    source = _official_file(tmp_path)
    line = _error("import", str(source), str(tmp_path / "run"), "--netD", "n_layers",
                  "--n_layers_D", "5000")
    assert "discriminator.n_layers = 5000" in line and "past 30 levels" in line, line
    assert not (tmp_path / "run").exists()


# --- translate: a ** pattern never follows a link back into its own folders -------------------

def test_a_glob_through_a_folder_link_loop_is_refused_at_once(
        tmp_path: Path, pix2pix_run: Path) -> None:
    import subprocess
    import sys
    import time

    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32)).save(photos / "a.png")
    # Two links back to the folder: glob's ** followed them 40 levels deep, 2**40 paths.
    os.symlink(".", photos / "again")
    os.symlink("..", photos / "up")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "imtrans", "translate", str(pix2pix_run),
                           f"{photos}/**/*.png", str(tmp_path / "out"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"error: input {photos}/**/*.png: its ** would follow {photos / 'again'}" \
        in done.stderr, done.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "out").exists()
    # A link to a folder outside the tree is followed as before.
    os.unlink(photos / "again")
    os.unlink(photos / "up")
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (32, 32)).save(other / "b.png")
    os.symlink(other, photos / "linked")
    result = CliRunner().invoke(cli, ["translate", str(pix2pix_run), f"{photos}/**/*.png",
                                      str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in
                  (tmp_path / "out").rglob("*.png")) == ["a.png", "linked/b.png"]


# --- run.output_dir that is a FIFO or a link loop: said what it is ----------------------------

def test_an_output_dir_that_is_not_a_folder_says_what_it_is(tmp_path: Path) -> None:
    from tests.conftest import ROOT

    recipe = str(ROOT / "recipes" / "pix2pix_edges2shoes.toml")
    for name, (path, said) in _not_folders(tmp_path).items():
        line = _error("validate", recipe, "--set", f"run.output_dir={str(path)!r}")
        assert f"run.output_dir = {str(path)!r} {said}" in line, (name, line)
    line = _error("validate", recipe, "--set",
                  f"run.output_dir={str(tmp_path / 'fifo' / 'runs')!r}")
    assert f"is inside {tmp_path / 'fifo'}, which is a FIFO (named pipe), not a folder" in line


# --- a run whose only checkpoint is a FIFO: the checkpoint is named, not "no checkpoint" --------

def test_a_run_whose_checkpoint_is_a_fifo_names_it(tmp_path: Path, pix2pix_run: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.toml").write_bytes((pix2pix_run / "recipe.toml").read_bytes())
    fifo = run / "checkpoints" / "step_00000009.safetensors"
    os.mkfifo(fifo)
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "in.png")
    line = _error("translate", str(run), str(tmp_path / "in.png"), str(tmp_path / "out"))
    assert line == f"error: checkpoint {fifo} is a FIFO (named pipe), not a regular file", line


def test_a_newer_checkpoint_that_is_not_a_file_is_named_not_passed_over(
        tmp_path: Path, pix2pix_run: Path) -> None:
    """With real checkpoints beside it, a newer checkpoint name that is a FIFO or a link to
    nothing is named: translate and resume would otherwise take an older one silently."""
    from imtrans.errors import CheckpointError
    from imtrans.runs.checkpoints.lookup import find_checkpoint

    run = tmp_path / "run"
    shutil.copytree(pix2pix_run, run)
    checkpoints = run / "checkpoints"
    fifo = checkpoints / "step_99999998.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match=r"step_99999998\.safetensors is a FIFO"):
        find_checkpoint(run)
    fifo.unlink()
    (checkpoints / "step_99999999.safetensors").symlink_to(tmp_path / "gone")
    with pytest.raises(CheckpointError, match=r"step_99999999\.safetensors is a symbolic link"):
        find_checkpoint(run)
    (checkpoints / "step_99999999.safetensors").unlink()
    (checkpoints / "step_00000000.safetensors").symlink_to(tmp_path / "gone")  # older: ignored
    assert find_checkpoint(run).name.startswith("step_00000004")


def test_export_never_writes_through_a_linked_export_folder(pix2pix_run: Path,
                                                            tmp_path: Path) -> None:
    """A run's ``export/`` folder that is a symbolic link is refused before any work: the
    default output would land in the link's target."""
    run = tmp_path / "run"
    shutil.copytree(pix2pix_run, run)
    shutil.rmtree(run / "export", ignore_errors=True)
    elsewhere = tmp_path / "users_folder"
    elsewhere.mkdir()
    (run / "export").symlink_to(elsewhere)
    result = CliRunner().invoke(cli, ["export", str(run), "--format", "torchscript"])
    error = cli_error(result)
    assert "export" in error and "symbolic link" in error, error
    assert list(elsewhere.iterdir()) == []
