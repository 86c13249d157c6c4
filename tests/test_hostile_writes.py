"""Writes that could lose data: outputs over files a command did not write, outputs onto a run
directory's files, writes through links inside a run directory, runs written into the data.

Each case makes the hostile files itself, runs the command line, and checks the one error line
and that every file that was there keeps its bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import cli_error
from PIL import Image
from test_no_overwrite import photos, snapshot

from imtrans.cli import cli
from imtrans.runs.checkpoints.lookup import find_checkpoint
from imtrans.runs.output_guard import RECORD_NAME

CYCLEGAN = str(Path(__file__).resolve().parents[1] / "recipes" / "cyclegan_photo2monet.toml")


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [a if isinstance(a, bytes) else str(a) for a in args])


@pytest.fixture
def checkpoint(pix2pix_run: Path) -> Path:
    return find_checkpoint(pix2pix_run)


@pytest.fixture
def other_run(pix2pix_run: Path, tmp_path: Path) -> Path:
    """A copy of a finished run: the run whose files other commands must not touch."""
    run = tmp_path / "runs" / "other"
    shutil.copytree(pix2pix_run, run, ignore=shutil.ignore_patterns("eval", "export"))
    (run / ".imtrans.lock").write_text("")
    return run


# --- 1. an existing output the command did not write --------------------------------------------


def test_translate_never_replaces_a_file_it_did_not_write(checkpoint: Path,
                                                          tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "a.jpg", "b.jpg")
    original = photos(folder / "2019", "a.jpg") / "a.jpg"  # not listed by photos/*.jpg
    before = snapshot(folder)
    # Refused before the checkpoint is read: a file that is no checkpoint gives the same line.
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    for model in (checkpoint, garbage):
        error = cli_error(invoke("translate", model, f"{folder}/*.jpg", folder / "2019",
                                 "--workers", 0))
        assert error == (f"error: output {original} exists and imtrans translate did not "
                         "write it: refusing to replace it; --overwrite lets it replace it, "
                         "or choose another output")
    assert snapshot(folder) == before and not (folder / "2019" / "b.jpg").exists()


def test_translate_again_into_the_same_place_needs_no_flag(checkpoint: Path,
                                                           tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "a.png", "sub/b.png")
    out = tmp_path / "out"
    for _ in range(2):
        result = invoke("translate", checkpoint, folder, out, "--workers", 0, "--html")
        assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a.png", "sub/b.png"]
    # A file the user replaced since is no longer the command's own output.
    user = photos(tmp_path / "user", "a.png", size=40) / "a.png"
    shutil.copyfile(user, out / "a.png")
    assert f"output {out / 'a.png'} exists and imtrans translate did not write it" in cli_error(
        invoke("translate", checkpoint, folder, out, "--workers", 0))
    assert (out / "a.png").read_bytes() == user.read_bytes()
    # So is a page of the user's where --html writes one.
    (out / "index.html").unlink()
    (out / "index.html").write_text("my page")
    result = invoke("translate", checkpoint, folder, out, "--workers", 0, "--html",
                    "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "index.html").read_text() != "my page"
    with Image.open(out / "a.png") as image:
        assert image.size == (32, 32)  # replaced, as --overwrite asked
    # And then it is the command's own output again.
    assert invoke("translate", checkpoint, folder, out, "--workers", 0).exit_code == 0


def test_translate_one_file_output_is_guarded_too(checkpoint: Path, tmp_path: Path) -> None:
    image = photos(tmp_path / "photos", "a.png") / "a.png"
    target = photos(tmp_path / "out", "mine.png") / "mine.png"
    before = snapshot(target)
    assert "--overwrite lets it replace it" in cli_error(
        invoke("translate", checkpoint, image, target, "--workers", 0))
    assert snapshot(target) == before
    assert invoke("translate", checkpoint, image, target, "--workers", 0,
                  "--overwrite").exit_code == 0
    assert invoke("translate", checkpoint, image, target, "--workers", 0).exit_code == 0


def test_a_record_that_is_a_link_is_never_written_through(checkpoint: Path,
                                                          tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "a.png")
    out = tmp_path / "out"
    out.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    (out / RECORD_NAME).symlink_to(notes)
    error = cli_error(invoke("translate", checkpoint, folder, out, "--workers", 0))
    assert f"{out / RECORD_NAME} exists and is not a record imtrans wrote" in error
    assert invoke("translate", checkpoint, folder, out, "--workers", 0,
                  "--overwrite").exit_code == 0
    assert notes.read_text() == "my notes\n"  # the link was replaced, not written through
    assert not (out / RECORD_NAME).is_symlink()
    lines = (out / RECORD_NAME).read_text().splitlines()
    assert json.loads(lines[0]) == {"imtrans_outputs": 1}
    assert json.loads(lines[1])["path"] == "a.png"


def test_every_writing_command_refuses_a_file_it_did_not_write(
        pix2pix_run: Path, checkpoint: Path, other_run: Path, tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    mine = {name: user / name for name in ("g.pt", "compare.html", "AtoB/00000.png",
                                           "combined/1.png")}
    for path in mine.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"the user's own file")
    a, b = photos(tmp_path / "A", "1.png"), photos(tmp_path / "B", "1.png")
    commands = [
        ("export", ["export", checkpoint, "--format", "torchscript", "-o", mine["g.pt"]]),
        ("report", ["report", pix2pix_run, other_run, "-o", mine["compare.html"]]),
        ("eval", ["eval", pix2pix_run, "--device", "cpu", "--metrics", "psnr",
                  "--max-images", 2, "--save-images", user]),
        ("data combine", ["data", "combine", a, b, user / "combined"]),
    ]
    existing = [mine["g.pt"], mine["compare.html"], mine["AtoB/00000.png"],
                mine["combined/1.png"]]
    for (command, args), path in zip(commands, existing, strict=True):
        error = cli_error(invoke(*args))
        assert error == (f"error: output {path} exists and imtrans {command} did not write "
                         "it: refusing to replace it; --overwrite lets it replace it, or "
                         "choose another output")
        assert path.read_bytes() == b"the user's own file"
        # --overwrite replaces it; then the command may replace its own output, unasked.
        for extra in (["--overwrite"], []):
            result = invoke(*args, *extra)
            assert result.exit_code == 0, result.output
        assert path.read_bytes() != b"the user's own file"


def test_no_output_lands_on_a_run_directorys_file(pix2pix_run: Path, checkpoint: Path,
                                                  other_run: Path, tmp_path: Path) -> None:
    before = snapshot(other_run)
    step = find_checkpoint(other_run)
    shutil.copytree(pix2pix_run, tmp_path / "b")  # a second run to compare
    (tmp_path / "link").symlink_to(other_run / "checkpoints", target_is_directory=True)
    (tmp_path / "runs-link").symlink_to(other_run.parent, target_is_directory=True)
    targets = [step, other_run / "recipe.toml", other_run / "metrics.jsonl",
               other_run / ".imtrans.lock", other_run / "environment.json",
               other_run / "train.log", other_run / "report.html",
               other_run / "checkpoints" / "step_99999999.safetensors",
               tmp_path / "link" / step.name, tmp_path / "runs-link" / "other" / "recipe.toml"]
    for target in targets:
        entry = Path(os.path.relpath(os.path.realpath(target), other_run)).parts[0]
        # The run is named as the output's path reaches it, else by its real path.
        shown = tmp_path / "runs-link" / "other" if "runs-link" in target.parts else other_run
        expected = (f"error: output {target} would replace {entry} of the run directory "
                    f"{shown}; a run's files are never written by another command, "
                    "--overwrite or not: choose an output outside the run directory")
        for extra in ([], ["--overwrite"]):
            assert cli_error(invoke("export", checkpoint, "--format", "torchscript", "-o",
                                    target, *extra)) == expected
            if target.suffix != ".html":
                continue
            assert cli_error(invoke("report", pix2pix_run, tmp_path / "b", "-o", target,
                                    *extra)) == expected
    folder = photos(tmp_path / "photos", "step_00000002.png")
    for out in (other_run / "samples", other_run / "checkpoints", tmp_path / "link"):
        for extra in ([], ["--overwrite"]):
            assert "of the run directory" in cli_error(
                invoke("translate", checkpoint, folder, out, "--workers", 0, *extra))
            assert "of the run directory" in cli_error(
                invoke("eval", pix2pix_run, "--device", "cpu", "--metrics", "psnr",
                       "--max-images", 2, "--save-images", out, *extra))
    a, b = photos(tmp_path / "A", "1.png"), photos(tmp_path / "B", "1.png")
    assert "of the run directory" in cli_error(
        invoke("data", "combine", a, b, other_run / "samples", "--overwrite"))
    # bench appends its line after minutes of work: refused before them.
    assert cli_error(invoke("bench", CYCLEGAN, "--output", other_run / "metrics.jsonl")) == (
        f"error: output {other_run / 'metrics.jsonl'} would replace metrics.jsonl of the run "
        f"directory {other_run}; a run's files are never written by another command, "
        "--overwrite or not: choose an output outside the run directory")
    assert snapshot(other_run) == before


def test_a_hard_link_to_a_checkpoint_keeps_the_checkpoint(checkpoint: Path, other_run: Path,
                                                          tmp_path: Path) -> None:
    step = find_checkpoint(other_run)
    before = step.read_bytes()
    hard = tmp_path / "hard.pt"
    os.link(step, hard)
    assert "--overwrite lets it replace it" in cli_error(
        invoke("export", checkpoint, "--format", "torchscript", "-o", hard))
    assert hard.read_bytes() == before
    # Replaced by name (written beside it and renamed): the run's checkpoint keeps its bytes.
    result = invoke("export", checkpoint, "--format", "torchscript", "-o", hard, "--overwrite")
    assert result.exit_code == 0, result.output
    assert step.read_bytes() == before and hard.read_bytes() != before


# --- 3. links inside a run directory -------------------------------------------------------------

def train(output_dir: Path, *args: object, steps: int = 2) -> Result:
    from conftest import TINY_RUN

    overrides = [*(f"{key}={value}" for key, value in TINY_RUN.items()),
                 f"run.output_dir={output_dir}", "run.name=r", f"train.max_steps={steps}",
                 "train.checkpoint_every=1", "train.keep_last=10"]
    return invoke("run", CYCLEGAN, *[a for o in overrides for a in ("--set", o)], *args)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("linked") / "runs"
    result = train(output_dir)
    assert result.exit_code == 0, result.output
    return output_dir / "r"


def test_a_run_never_writes_through_a_link_in_its_directory(finished_run: Path,
                                                            tmp_path: Path) -> None:
    users = tmp_path / "user"
    users.mkdir()
    cases = {".imtrans.lock": "a symbolic link", "metrics.jsonl": "a symbolic link",
             "train.log": "a symbolic link", "samples": "a symbolic link",
             "checkpoints": "a symbolic link", "hard:metrics.jsonl": "a hard link",
             "hard:.imtrans.lock": "a hard link", "hard:train.log": "a hard link"}
    for case, what in cases.items():
        name = case.removeprefix("hard:")
        runs = tmp_path / case.replace(":", "_") / "runs"
        shutil.copytree(finished_run, runs / "r")
        run = runs / "r"
        target = users / f"{case.replace(':', '_')}"
        if (run / name).is_dir():
            shutil.move(run / name, target)
        else:
            target.write_bytes(b"the user's own file\n")
            (run / name).unlink(missing_ok=True)
        if case.startswith("hard:"):
            os.link(target, run / name)
        else:
            (run / name).symlink_to(target, target_is_directory=target.is_dir())
        before = snapshot(users)
        error = cli_error(train(runs, "--resume", run, steps=3))
        start = f"error: {run / name} is {what}"
        assert error.startswith(start), error
        assert error.endswith(": imtrans never writes a run directory's files through a "
                              "link; remove it (the run then writes a new one) or train into "
                              "another directory")
        assert snapshot(users) == before  # nothing truncated, appended or replaced there
        assert not list(users.rglob(".tmp-*"))


# --- 4. a run directory inside the data ---------------------------------------------------------


def test_a_run_inside_a_data_split_is_refused_by_validate_and_run(tmp_path: Path) -> None:
    from imtrans.samples import sample_root

    data = tmp_path / "data"
    sample = sample_root("monet2photo")
    assert sample is not None
    shutil.copytree(sample, data)
    (tmp_path / "elsewhere").symlink_to(data / "trainB", target_is_directory=True)
    before = snapshot(data)
    tiny = ["data.num_workers=0", "run.device=cpu", "train.max_steps=1", "generator.ngf=4",
            "discriminator.ndf=4", "data.load_size=36", "data.crop_size=32",
            f"data.root={data}"]
    for output_dir, folder in ((data / "trainA", data / "trainA"),
                               (data / "testB" / "deep" / "runs", data / "testB"),
                               (tmp_path / "elsewhere" / "runs", data / "trainB")):
        for command in ("validate", "run"):
            args = [a for o in [*tiny, f"run.output_dir={output_dir}"] for a in ("--set", o)]
            error = cli_error(invoke(command, CYCLEGAN, *args))
            assert error == (f"error: {CYCLEGAN}: run.output_dir = '{output_dir}': the run "
                             f"directory would lie inside the data folder {folder}, which the "
                             "dataset reads: its sample grids would be read back as images of "
                             "the data; choose a run.output_dir outside the dataset")
    assert snapshot(data) == before
    assert not list(data.rglob("cyclegan*"))
    # Beside the splits is not inside one: it trains.
    args = [a for o in [*tiny, f"run.output_dir={data / 'runs'}"] for a in ("--set", o)]
    result = invoke("run", CYCLEGAN, *args)
    assert result.exit_code == 0, result.output


# --- 5. translate: long names, nothing written, names that are not UTF-8 -------------------------


def test_a_name_too_long_for_its_output_is_skipped_and_counted(checkpoint: Path,
                                                               tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "a.png", "b" * 250 + ".png", "c" * 251 + ".jpg")
    out = tmp_path / "out"
    # 254 bytes kept as they are: written (its temporary name fits too).
    result = invoke("translate", checkpoint, folder / ("b" * 250 + ".png"), out,
                    "--workers", 0)
    assert result.exit_code == 0, result.output
    assert (out / ("b" * 250 + ".png")).is_file()
    # 256 bytes once .jpg becomes .webp: skipped, counted, the others written.
    result = invoke("translate", checkpoint, folder, tmp_path / "webp", "--workers", 0,
                    "--format", "webp")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        f"wrote 2 image(s) to {tmp_path / 'webp'}; skipped 1 file(s) (1 output name(s) too "
        "long for the file system)")
    assert sorted(p.name for p in (tmp_path / "webp").glob("*.webp")) == [
        "a.webp", "b" * 250 + ".webp"]
    assert not list((tmp_path / "webp").glob(".tmp-*"))


def test_translate_that_writes_nothing_is_an_error(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"not an image")
    result = invoke("translate", checkpoint, folder, tmp_path / "out", "--workers", 0)
    assert cli_error(result) == ("error: nothing was written: all 2 input(s) were skipped "
                                 "(2 unreadable)")
    assert result.output.count("warning: skipped") == 2


def test_names_that_are_not_utf8_are_translated_and_printed(checkpoint: Path,
                                                            tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    photos(folder, "a.png")
    name = os.fsdecode(b"caf\xe9.png")
    shutil.copyfile(folder / "a.png", folder / name)
    (folder / os.fsdecode(b"bad\xff.png")).write_bytes(b"not an image")
    out = tmp_path / os.fsdecode(b"out\xfe")
    result = invoke("translate", checkpoint, folder, out, "--workers", 0, "--html")
    assert result.exit_code == 0, result.output
    assert f"warning: skipped {folder}/bad\\xff.png: " in result.output
    assert f"wrote 2 image(s) to {tmp_path}/out\\xfe; skipped 1 file(s) (1 unreadable)" \
        in result.output
    assert (out / name).is_file() and (out / "index.html").is_file()
    assert "caf%E9.png" in (out / "index.html").read_text()
    # One named on the command line, and an error that names one.
    result = invoke("translate", checkpoint, folder / name, tmp_path / "one", "--workers", 0)
    assert result.exit_code == 0, result.output
    result = invoke("translate", checkpoint, folder / os.fsdecode(b"bad\xff.png"),
                    tmp_path / "two", "--workers", 0)
    assert cli_error(result) == ("error: nothing was written: all 1 input(s) were skipped "
                                 "(1 unreadable)")
    assert f"warning: skipped {folder}/bad\\xff.png: cannot read image {folder}/bad\\xff.png" \
        in result.output
    # An error line that names such a file prints it the same way.
    (tmp_path / "three").mkdir()
    photos(tmp_path / "three", name)
    assert f"output {tmp_path}/three/caf\\xe9.png exists" in cli_error(
        invoke("translate", checkpoint, folder / name, tmp_path / "three", "--workers", 0))


def test_a_record_line_nested_deep_is_not_a_record_and_no_traceback(tmp_path: Path) -> None:
    """A line of the output record nested deeper than any record (as the first line or
    later) is not taken for one: the record loads, the file it does not vouch for is not
    this command's own."""
    from imtrans.runs.output_guard import _HEADER, OutputRecord

    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "a.png").write_bytes(b"user's")
    for lines in ([deep], [json.dumps(_HEADER), deep]):
        (tmp_path / RECORD_NAME).write_text("\n".join(lines) + "\n")
        record = OutputRecord(tmp_path)
        assert record.foreign == (lines[0] == deep)
        assert not record.wrote(tmp_path / "a.png")


def test_an_output_that_is_a_fifo_is_refused_even_with_overwrite(checkpoint: Path,
                                                                 tmp_path: Path) -> None:
    """A device, FIFO or socket at an output's name is never replaced: the rename of the
    finished file would replace the node itself (as root, even one under /dev)."""
    image = photos(tmp_path / "photos", "a.png") / "a.png"
    (tmp_path / "out").mkdir()
    fifo = tmp_path / "out" / "a.png"
    os.mkfifo(fifo)
    for extra in ((), ("--overwrite",)):
        error = cli_error(invoke("translate", checkpoint, image, fifo, "--workers", 0, *extra))
        assert error == (f"error: output {fifo} is a FIFO (named pipe), not a regular file; "
                         "--overwrite or not, choose the name of a file to write"), error
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
