"""Training runs and evaluation under broken state: one clear line or a warning, never a
traceback, and nothing already written lost.

Each case damages a tiny pix2pix run (32 px, a 5-level U-Net) or its data the way a careless or
hostile user did, then runs the command line in this process (``CliRunner``) or, where a signal
or a second process is needed, as a subprocess.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from imtrans.cli.app import cli
from imtrans.runs.metrics_file import DamagedMetricsWarning

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "pix2pix_edges2shoes.toml")


def tiny_sets(output: Path, steps: int, **more: object) -> list[str]:
    """``--set`` options of a tiny pix2pix run writing under ``output``."""
    settings: dict[str, object] = {
        "data.load_size": 36, "data.crop_size": 32, "generator.ngf": 4,
        "discriminator.ndf": 4, "generator.name": "unet", "generator.num_downs": 5,
        "data.num_workers": 0, "run.device": "cpu", "train.log_every": 1,
        "train.sample_every": 2, "train.max_steps": steps, "run.output_dir": str(output),
    }
    settings |= {k.replace("__", "."): v for k, v in more.items()}
    sets = []
    for key, value in settings.items():
        text = f"{value!r}" if isinstance(value, str) else str(value)
        sets += ["--set", f"{key}={text}"]
    return sets


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-step run (one record per step), copied by each test that damages it."""
    output = tmp_path_factory.mktemp("base") / "runs"
    result = invoke("run", RECIPE, *tiny_sets(output, 3))
    assert result.exit_code == 0, result.output
    return output / "pix2pix_edges2shoes"


def copy_run(base: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs" / base.name
    shutil.copytree(base, target)
    return target


# --- a damaged metrics.jsonl ---------------------------------------------------------------

DAMAGED_LINES = {
    "garbage": (b"}}garbage{{", "not JSON"),
    "not-utf8": (b'{"step": 2, "note": "\xff\xfe"}', "bytes that are not UTF-8"),
    "not-an-object": (b"[1, 2]", "a JSON list, not an object"),
    "string-step": (b'{"step": "two", "losses": {"D": 1.0}}', 'its step "two" is not'),
    "null-step": (b'{"step": null}', "its step null is not"),
    "float-step": (b'{"step": 1e999}', "its step Infinity is not"),
    "huge-int": (b'{"step": ' + b"9" * 5000 + b"}", "not JSON"),
    "deep": (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
}


@pytest.mark.parametrize("damage", list(DAMAGED_LINES))
def test_a_damaged_metrics_line_is_skipped_with_a_warning_and_the_run_resumes(
        base_run: Path, tmp_path: Path, damage: str) -> None:
    run_dir = copy_run(base_run, tmp_path)
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_bytes().split(b"\n")
    bad, reason = DAMAGED_LINES[damage]
    lines.insert(1, bad)  # line 2, between the records of steps 1 and 2
    metrics.write_bytes(b"\n".join(lines))

    with pytest.warns(DamagedMetricsWarning) as caught:
        result = invoke("run", RECIPE, *tiny_sets(tmp_path / "runs", 4), "--resume",
                        str(run_dir))
    assert result.exit_code == 0, result.output
    assert "finished at step 4" in result.output
    messages = [str(w.message) for w in caught]
    assert all(f"{metrics}: 1 damaged line skipped (line 2: " in m for m in messages), messages
    assert any(reason in m for m in messages), messages

    # The damaged line is kept byte for byte; the records are those of steps 1 to 4.
    after = metrics.read_bytes().split(b"\n")
    assert after[1] == bad and after[-1] == b""
    import json
    steps = [json.loads(line)["step"] for i, line in enumerate(after[:-1]) if i != 1]
    assert steps == [1, 2, 3, 4]

    with pytest.warns(DamagedMetricsWarning, match="line 2: .*the report leaves them out"):
        report = invoke("report", str(run_dir))
    assert report.exit_code == 0, report.output
    assert (run_dir / "report.html").is_file()


def test_a_torn_last_metrics_line_is_dropped_without_a_warning(
        base_run: Path, tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    from imtrans.training.records import MetricsLog

    run_dir = copy_run(base_run, tmp_path)
    metrics = run_dir / "metrics.jsonl"
    whole = metrics.read_bytes()
    metrics.write_bytes(whole + b'{"step": 4, "los')  # a process killed mid-write
    MetricsLog(metrics).truncate_after(3)
    assert metrics.read_bytes() == whole
    assert not [w for w in recwarn if w.category is DamagedMetricsWarning]


# --- a deeply nested checkpoint manifest ------------------------------------------------------


def _checkpoint_with_manifest(path: Path, manifest: str) -> Path:
    """A valid safetensors file (one small tensor) whose imtrans manifest is ``manifest``."""
    import json
    import struct

    header = {"__metadata__": {"imtrans.format": "1", "imtrans.manifest": manifest},
              "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 8)
    return path


@pytest.mark.parametrize("depth", [101, 5000, 100000])
def test_a_deeply_nested_manifest_is_one_checkpoint_error(tmp_path: Path, depth: int) -> None:
    from imtrans.errors import CheckpointError
    from imtrans.runs.checkpoints.files import load_checkpoint

    nested = '{"step": 1, "x": ' + "[" * depth + "]" * depth + "}"
    path = _checkpoint_with_manifest(tmp_path / "step_00000001.safetensors", nested)
    with pytest.raises(CheckpointError, match="has a manifest that is JSON nested more than "
                       "100 levels deep") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    # and through the command line, as one line
    result = CliRunner().invoke(cli, ["export", str(path), "--format", "torchscript",
                                      "-o", str(tmp_path / "g.pt")])
    from conftest import cli_error
    assert "has a manifest that is JSON nested more than 100 levels deep" in cli_error(result)


def test_a_manifest_nested_100_levels_still_loads(tmp_path: Path) -> None:
    from imtrans.runs.checkpoints.files import load_checkpoint

    nested = '{"step": 1, "x": ' + "[" * 99 + "]" * 99 + "}"
    path = _checkpoint_with_manifest(tmp_path / "step_00000001.safetensors", nested)
    assert load_checkpoint(path).manifest["step"] == 1


@pytest.mark.parametrize("name", ["checkpoints/best.json", "eval/latest.json"])
def test_deeply_nested_run_json_files_do_not_break_the_report(
        base_run: Path, tmp_path: Path, name: str) -> None:
    run_dir = copy_run(base_run, tmp_path)
    target = run_dir / name
    target.parent.mkdir(exist_ok=True)
    target.write_text("[" * 100000 + "]" * 100000)
    result = invoke("report", str(run_dir))
    assert result.exit_code == 0, result.output


# --- file names that are not UTF-8 -------------------------------------------------------------


def _folder_with_a_bad_name(tmp_path: Path) -> tuple[Path, bytes]:
    """An aligned training folder: the bundled pairs plus an unreadable file whose name holds
    the byte 0xff (not UTF-8), made through a bytes path."""
    import os

    root = tmp_path / "data"
    shutil.copytree(ROOT / "imtrans" / "samples" / "edges2shoes" / "train", root / "train")
    bad = os.path.join(os.fsencode(root / "train"), b"bad\xffname.png")
    with open(bad, "wb") as file:
        file.write(b"text, not an image")
    return root, bad


def test_a_file_name_that_is_not_utf8_is_skipped_and_named_printably(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root, bad = _folder_with_a_bad_name(tmp_path)
    # A strict UTF-8 stderr, as under PYTHONIOENCODING=utf-8: a surrogate would not print.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env |= {"PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "imtrans", "run", RECIPE,
         *tiny_sets(tmp_path / "runs", 3, data__root=str(root))],
        capture_output=True, env=env, timeout=300)
    stderr = done.stderr.decode("utf-8")  # strict: everything printed is UTF-8
    assert done.returncode == 0, stderr
    assert "Traceback" not in stderr
    printable = f"{root}/train/bad\\xffname.png"
    lines = stderr.strip().splitlines()
    finished = next(i for i, line in enumerate(lines) if line.startswith("finished at step 3: "))
    assert lines[finished - 1] == (
        "warning: skipped 1 unusable image files, each replaced by the next usable one (set "
        "data.strict = true to stop instead): " + printable)
    assert lines[finished + 1:] and all("smoke test" in line or "A real run" in line
                                        for line in lines[finished + 1:])  # a short run's end
    train_log = (tmp_path / "runs" / "pix2pix_edges2shoes" / "train.log").read_text("utf-8")
    assert printable in train_log
    assert os.path.exists(bad)  # the file is left as it was


def test_a_strict_run_names_a_file_that_is_not_utf8_in_one_line(tmp_path: Path) -> None:
    from conftest import cli_error

    root, _ = _folder_with_a_bad_name(tmp_path)
    result = CliRunner().invoke(cli, ["run", RECIPE, *tiny_sets(
        tmp_path / "runs", 3, data__root=str(root), data__strict=True)])
    assert "bad\\xffname.png" in cli_error(result)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_recipe_value_that_is_not_utf8_is_one_line(tmp_path: Path, command: str) -> None:
    import os

    from conftest import cli_error

    root, _ = _folder_with_a_bad_name(tmp_path)
    odd = tmp_path / os.fsdecode(b"d\xffta")
    root.rename(odd)  # the data folder's own name is not UTF-8
    # Unquoted, as a shell passes it (a quoted TOML string would escape the byte as text).
    result = CliRunner().invoke(cli, [command, RECIPE, *tiny_sets(tmp_path / "runs", 3),
                                      "--set", f"data.root={odd}"])
    assert cli_error(result).endswith(
        f'data.root = "{tmp_path}/d\\xffta": not UTF-8 text (a recipe holds UTF-8 only); '
        "rename the file or folder, or give a link to it with a UTF-8 name")
    assert not (tmp_path / "runs").exists()


# --- 1,400 nested folders ----------------------------------------------------------------------


def _nest(folder: Path, levels: int, name: str = "a") -> Path:
    """``levels`` folders nested in ``folder`` (made through relative paths, so no path the
    system sees is longer than it allows); return the deepest."""
    import os

    here = os.getcwd()
    os.chdir(folder)
    try:
        for _ in range(levels):
            os.mkdir(name)
            os.chdir(name)
        deepest = Path(os.getcwd())
        Path("deep.png").write_bytes(b"never listed")
    finally:
        os.chdir(here)
    return deepest


def _unnest(folder: Path, name: str) -> None:
    """Remove what :func:`_nest` made, one level at a time from the top and through short
    paths: ``shutil.rmtree`` (pytest's clean-up of old temporary folders too) recurses once per
    level and overflows Python's stack on 1,400 levels."""
    import os

    top, spare = folder / name, folder / ".unnesting"
    while top.is_dir():
        for entry in os.listdir(top):
            if entry != name:
                os.unlink(top / entry)  # the images a test put at this level
        if (top / name).is_dir():
            os.rename(top / name, spare)
            os.rmdir(top)
            os.rename(spare, top)
        else:
            os.rmdir(top)


@pytest.fixture
def nest() -> Iterator[Callable[..., Path]]:
    """:func:`_nest`, with what it made removed after the test."""
    made: list[tuple[Path, str]] = []

    def make(folder: Path, levels: int, name: str = "a") -> Path:
        made.append((folder, name))
        return _nest(folder, levels, name)

    yield make
    for folder, name in made:
        _unnest(folder, name)


@pytest.mark.parametrize("name", ["a", "a" * 200])  # the long name passes PATH_MAX
def test_1400_nested_folders_are_searched_64_levels_deep_with_one_warning(
        tmp_path: Path, name: str, nest: Callable[..., Path]) -> None:
    from imtrans.data.images import MAX_FOLDER_DEPTH, SkippedFolderWarning, find_images

    assert MAX_FOLDER_DEPTH == 64
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "top.png").write_bytes(b"x")
    nest(folder, 1400, name)
    # An image at the deepest level searched is found; one below it is not.
    level64 = folder.joinpath(*[name] * 64)
    level65 = level64 / name
    if len(str(level65)) < 4000:
        (level64 / "at64.png").write_bytes(b"x")
        (level65 / "at65.png").write_bytes(b"x")
    with pytest.warns(SkippedFolderWarning) as caught:
        found = find_images(folder)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(f"image folder {folder}: not searched: ")
    if len(str(level65)) < 4000:
        assert found == [level64 / "at64.png", folder / "top.png"]
        assert "1 folder(s) nested more than 64 levels deep" in message
    else:  # 200-byte names: the path passes the system's limit before level 64
        assert found == [folder / "top.png"]
        assert "folder(s) that cannot be listed" in message


def test_training_from_a_folder_with_1400_nested_folders_completes(
        tmp_path: Path, nest: Callable[..., Path]) -> None:
    from imtrans.data.images import SkippedFolderWarning

    root, _ = _folder_with_a_bad_name(tmp_path)
    nest(root / "train", 1400)
    with pytest.warns(SkippedFolderWarning, match="nested more than 64 levels deep"):
        result = invoke("run", RECIPE, *tiny_sets(tmp_path / "runs", 2, data__root=str(root)))
    assert result.exit_code == 0, result.output
    assert "finished at step 2" in result.output


def test_translate_of_a_glob_over_1400_nested_folders_is_one_line(
        base_run: Path, tmp_path: Path, nest: Callable[..., Path]) -> None:
    from conftest import cli_error

    folder = tmp_path / "photos"
    folder.mkdir()
    nest(folder, 1400)
    result = CliRunner().invoke(cli, ["translate", str(base_run), f"{folder}/**/*.png",
                                      str(tmp_path / "out")])
    assert "its ** reaches folders nested too deeply to search" in cli_error(result)


# --- SIGHUP stops like SIGTERM -------------------------------------------------------------------


def test_sighup_to_the_process_group_saves_a_checkpoint_and_exits_130(tmp_path: Path) -> None:
    """A closed terminal sends SIGHUP to every process of its group: the training process
    stops after the step under way with a checkpoint; its loading process ignores it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from imtrans.runs.checkpoints.files import load_checkpoint

    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env |= {"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imtrans", "run", RECIPE,
         *tiny_sets(tmp_path / "runs", 100000, data__num_workers=1,
                    schedule__n_epochs=100000)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    metrics = tmp_path / "runs" / "pix2pix_edges2shoes" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGHUP)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "SIGHUP: stopping after this step, with a checkpoint of it" in stderr
    assert f"Resume with: imtrans run {RECIPE} --set " in stderr
    assert "Traceback" not in stderr and "DataLoader worker" not in stderr
    saved = sorted((metrics.parent / "checkpoints").glob("step_*.safetensors"))
    assert saved, stderr
    checkpoint = load_checkpoint(saved[-1])
    assert checkpoint.manifest["step"] >= 2


# --- eval with unusable test files ----------------------------------------------------------------


def _test_split(tmp_path: Path, name: str, bad: bool) -> Path:
    """A paired test split of 4 bundled pairs, plus (``bad``) 2 unusable files sorted first
    and last: the first and last positions are where a stand-in would be taken."""
    root = tmp_path / name
    (root / "test").mkdir(parents=True)
    for path in sorted((ROOT / "imtrans" / "samples" / "edges2shoes" / "val").iterdir())[:4]:
        shutil.copy(path, root / "test" / path.name)
    if bad:
        (root / "test" / "0_text.jpg").write_text("not an image")
        (root / "test" / "zz_empty.png").write_bytes(b"")
    return root


def test_eval_scores_only_the_usable_test_files_and_counts_the_others(
        base_run: Path, tmp_path: Path) -> None:
    import json
    import warnings

    from imtrans.data.folders import SkippedImageWarning

    run_dir = copy_run(base_run, tmp_path)
    clean = _test_split(tmp_path, "clean", bad=False)
    damaged = _test_split(tmp_path, "damaged", bad=True)
    results = {}
    for root in (clean, damaged):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = invoke("eval", str(run_dir), "--data", str(root), "--metrics",
                            "psnr,ssim")
        assert result.exit_code == 0, result.output
        assert len([w for w in caught if w.category is SkippedImageWarning]) == (
            2 if root is damaged else 0)
        saved = sorted((run_dir / "eval").glob("*.json"), key=lambda p: p.stat().st_mtime)
        results[root.name] = (json.loads(saved[-1].read_text()), result.output)
    record, output = results["damaged"]
    assert record["protocol"]["images"] == {"generated": 4, "real": 4, "skipped": 2}
    assert "AtoB: translating 4 test images" in output and "comparing with 4 real ones" in output
    assert ("warning: AtoB: skipped 2 unusable test image file(s), left out of the scores "
            f"(none stands in for another): {damaged}/test/0_text.jpg, "
            f"{damaged}/test/zz_empty.png") in output
    # The scores are those of the 4 usable pairs alone: no image was counted twice.
    clean_record, _ = results["clean"]
    assert clean_record["protocol"]["images"] == {"generated": 4, "real": 4}
    assert record["metrics"] == clean_record["metrics"]


def test_unpaired_test_sets_leave_unusable_files_out(tmp_path: Path) -> None:
    from imtrans.catalogue.plugins import load_components
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.evaluation.testset import load_test_set

    root = tmp_path / "unpaired"
    source = ROOT / "imtrans" / "samples" / "monet2photo"
    for side in "AB":
        shutil.copytree(source / f"test{side}" if (source / f"test{side}").is_dir()
                        else source / f"train{side}", root / f"test{side}")
    usable_a = len(list((root / "testA").iterdir()))
    (root / "testA" / "0_bad.jpg").write_text("not an image")
    registry = load_components(autoload=False)
    recipe = load_recipe(ROOT / "recipes" / "cyclegan_photo2monet.toml",
                         ["data.load_size=36", "data.crop_size=32"], registry=registry)
    with pytest.warns():
        data = load_test_set(recipe, registry, data_root=root)
    assert data.skipped == (root / "testA" / "0_bad.jpg",)
    assert len(data.inputs) == usable_a


# --- validate refuses what run refuses ----------------------------------------------------------


def _refused_recipes(tmp_path: Path) -> dict[str, dict[str, object]]:
    """Recipes that loaded (validate said valid) but that run refused before training."""
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    (junk / "train").mkdir(parents=True)
    for name in ("a.jpg", "b.png"):
        (junk / "train" / name).write_text("not an image")
    no_test = tmp_path / "no_test"
    shutil.copytree(ROOT / "imtrans" / "samples" / "edges2shoes" / "train", no_test / "train")
    a_file = tmp_path / "a_file"
    a_file.write_text("a file")
    fake = tmp_path / "fake_inception.pt"
    fake.write_bytes(b"not the standard weights")
    return {
        "data folder without its split": {"data.root": str(empty)},
        "data folder of files that are not images": {"data.root": str(junk)},
        "output folder is a file": {"run.output_dir": str(a_file)},
        "output folder under a file": {"run.output_dir": str(a_file / "runs")},
        "eval without a test split": {"data.root": str(no_test), "eval.every_epochs": 1,
                                      "eval.metric": "psnr"},
        "eval with untrusted Inception weights": {
            "data.root": str(no_test), "eval.every_epochs": 1, "eval.split": "train",
            "eval.inception": str(fake)},
        "eval with missing Inception weights": {
            "data.root": str(no_test), "eval.every_epochs": 1, "eval.split": "train",
            "eval.inception": str(tmp_path / "missing.pt")},
        "device cache of images of many sizes": {"data.cache": "device",
                                                 "data.preprocess": "none"},
        "run name longer than a folder name": {"run.name": "n" * 300},
        "output folder name longer than a folder name": {
            "run.output_dir": str(tmp_path / ("z" * 300) / "runs")},
        # Writable to root by its permissions, yet no folder can be made there.
        "output folder in /proc": {"run.output_dir": "/proc/imtrans_runs"},
        "output folder in /sys": {"run.output_dir": "/sys/imtrans_runs"},
    }


REFUSED = ["data folder without its split", "data folder of files that are not images",
           "output folder is a file", "output folder under a file", "eval without a test split",
           "eval with untrusted Inception weights", "eval with missing Inception weights",
           "device cache of images of many sizes", "run name longer than a folder name",
           "output folder name longer than a folder name",
           *(["output folder in /proc"] if os.path.isdir("/proc/self") else []),
           *(["output folder in /sys"] if os.path.isdir("/sys/kernel") else [])]


@pytest.mark.parametrize("case", REFUSED)
def test_validate_refuses_what_run_refuses_with_the_same_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    from conftest import cli_error

    monkeypatch.delenv("IMTRANS_TRUST_INCEPTION", raising=False)
    settings = _refused_recipes(tmp_path)[case]
    output = tmp_path / "runs"
    more = {k.replace(".", "__"): v for k, v in settings.items()}
    more.setdefault("run__output_dir", str(output))
    sets = tiny_sets(output, 1, **more)
    validated = cli_error(CliRunner().invoke(cli, ["validate", RECIPE, *sets]))
    ran = cli_error(CliRunner().invoke(cli, ["run", RECIPE, *sets]))
    assert validated == ran
    assert not output.exists()  # run refused before making a run directory


def test_a_recipe_that_validates_runs(tmp_path: Path) -> None:
    sets = tiny_sets(tmp_path / "runs", 1)
    validated = invoke("validate", RECIPE, *sets)
    assert validated.exit_code == 0 and "is valid" in validated.output
    ran = invoke("run", RECIPE, *sets)
    assert ran.exit_code == 0 and "finished at step 1" in ran.output


# --- a rank of --nproc 2 killed -------------------------------------------------------------------


def _rank_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = [item[5:].decode() for item in environ if item.startswith(b"RANK=")]
    return found[0] if found else None


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [int(c) for t in tasks for c in (t / "children").read_text().split()]
    except OSError:
        return []


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_a_killed_rank_is_one_error_line_with_the_resume_command(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env |= {"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    sets = tiny_sets(tmp_path / "runs", 100000, train__sample_every=100000,
                     train__checkpoint_every=2, schedule__n_epochs=100000)
    proc = subprocess.Popen([sys.executable, "-m", "imtrans", "run", RECIPE, "--nproc", "2",
                             *sets], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    run_dir = tmp_path / "runs" / "pix2pix_edges2shoes"
    try:
        deadline = time.monotonic() + 180
        while not list((run_dir / "checkpoints").glob("step_*.safetensors")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        ranks = {_rank_of(pid): pid for child in _children(proc.pid)
                 for pid in _children(child)}
        victim = ranks["1"]
        os.kill(victim, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr and "ChildFailedError" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: rank 1 (pid {victim}) was killed by SIGKILL, so torchrun stopped the other "
        f"ranks; resume from its last checkpoint with: imtrans run {RECIPE} --nproc 2 --resume "
        f"{run_dir} (torchrun's report: {run_dir / 'torchrun.log'})"], stderr
    assert "ChildFailedError" in (run_dir / "torchrun.log").read_text()  # kept, not shown
    # The line's resume command works (with 2 processes: the checkpoint's global batch).
    from imtrans.runs.checkpoints.files import list_checkpoints

    step = list_checkpoints(run_dir / "checkpoints")[-1][0]
    resumed = subprocess.run(
        [sys.executable, "-m", "imtrans", "run", RECIPE, "--nproc", "2",
         *tiny_sets(tmp_path / "runs", step + 1, schedule__n_epochs=100000),
         "--resume", str(run_dir)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"finished at step {step + 1}" in resumed.stderr
    # An imtrans error that every rank meets is said once, by rank 0.
    changed = subprocess.run(
        [sys.executable, "-m", "imtrans", "run", RECIPE, "--nproc", "2", *sets,
         "--set", "optim.lr=0.001", "--resume", str(run_dir)],
        env=env, capture_output=True, text=True, timeout=300)
    assert changed.returncode == 1, changed.stderr
    errors = [line for line in changed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "optim.lr 0.0002 -> 0.001" in errors[0], changed.stderr
    assert "Traceback" not in changed.stderr


def test_a_deeply_nested_safetensors_header_is_one_checkpoint_error(tmp_path: Path) -> None:
    import struct

    from imtrans.errors import CheckpointError
    from imtrans.runs.checkpoints.files import load_checkpoint

    deep = "[" * 100000 + "]" * 100000
    raw = ('{"__metadata__": {"imtrans.format": "1", "imtrans.manifest": "{}"}, "x": '
           + deep + "}").encode()
    path = tmp_path / "step_00000001.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(CheckpointError, match=r"is not a readable safetensors file: .*recursion"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe not text",
                                     b'{"pid": 1, "host": "' + b"h" * 2_000_000 + b'"}'])
def test_a_busy_lock_holding_anything_names_its_holder_in_one_error(tmp_path: Path,
                                                                    content: bytes) -> None:
    """Who holds a busy run directory is read from its lock file; a file nested deeper than
    any holder record, not text, or huge says "another process", never a traceback."""
    import fcntl

    from imtrans.runs.lock import LOCK_NAME, RunDirBusyError, lock_run_dir

    lock = tmp_path / LOCK_NAME
    lock.write_bytes(content)
    with lock.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a second description: it conflicts
        with pytest.raises(RunDirBusyError, match=r"is in use by another process"):
            lock_run_dir(tmp_path)
    assert lock.read_bytes() == content  # refused before a byte was written
