"""A start that fails leaves no run directory behind, so the retry takes the same name.

What can be checked before the run directory is made is (a built-in tracker's missing package);
a failure after it (a tracker that fails to start, an error in the first step) removes the
directory this start made when it holds nothing of value, and says so in the error line. A run
directory that existed before, or that holds records or checkpoints, is kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, TINY_RUN, cli_error, registry_with_plugin
from torch import Tensor

import imtrans
from imtrans.catalogue.plugins import Components
from imtrans.cli import cli
from imtrans.errors import DataError
from imtrans.losses import PairLoss
from imtrans.runs.failed_start import discard_failed_start
from imtrans.runs.lock import lock_run_dir

RECIPE = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")


class FailingTracker:
    """A plugin tracker whose server cannot be reached: it fails when the run starts it."""

    def __init__(self, *, run_dir: Path) -> None:
        raise ConnectionError("tracking server unreachable")


class FailingLoss(PairLoss):
    """A plugin loss that finds its input unusable at step ``at`` (1: the first step)."""

    def __init__(self, *, weight: float = 1.0, at: int = 1, bug: bool = False) -> None:
        super().__init__(weight=weight)
        self.at, self.bug, self.calls = at, bug, 0

    def distance(self, output: Tensor, target: Tensor) -> Tensor:
        self.calls += 1
        if self.calls >= 2 * self.at - 1:  # called twice a step (both cycle directions)
            if self.bug:  # a plugin's own mistake: a traceback, not an error line
                raise ZeroDivisionError("division by zero")
            raise DataError("the loss found an unusable batch")
        return (output - target).abs()


class FailingPlugin:
    @imtrans.hookimpl
    def register_loggers(self, register):
        register("failing", FailingTracker)

    @imtrans.hookimpl
    def register_losses(self, register):
        register("failing_loss", FailingLoss)


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> Components:
    """The built-ins and the failing plugin, for every command run here."""
    return registry_with_plugin(monkeypatch, "failing-plugin", FailingPlugin())


def run(tmp_path: Path, *sets: str, resume: str | None = None) -> tuple[int, str]:
    settings = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in TINY_RUN.items()]
    settings += ["train.max_steps=2", f"run.output_dir='{tmp_path / 'runs'}'",
                 "run.name='try'", *sets]
    args = ["run", RECIPE, *(a for s in settings for a in ("--set", s))]
    args += ["--resume", resume] if resume else []
    result = CliRunner().invoke(cli, args)
    if result.exit_code == 0:
        return 0, result.output
    return result.exit_code, cli_error(result)


def test_an_unexpected_exception_in_the_first_step_leaves_nothing(
        tmp_path: Path, loaded: Components) -> None:
    result = CliRunner().invoke(cli, ["run", RECIPE, *(a for s in [
        *(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in TINY_RUN.items()),
        f"run.output_dir='{tmp_path / 'runs'}'", "losses.cycle.name=failing_loss",
        "losses.cycle.bug=true"] for a in ("--set", s))])
    assert isinstance(result.exception, ZeroDivisionError)
    assert not (tmp_path / "runs").exists()


def runs(tmp_path: Path) -> list[str]:
    folder = tmp_path / "runs"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_missing_tracker_package_is_refused_before_anything_is_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loaded: Components) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    code, error = run(tmp_path, 'log.backends=["jsonl", "tensorboard"]')
    assert code == 1
    assert "the tensorboard logger needs the 'tensorboard' package" in error
    assert "pip install 'imtrans[tensorboard]'" in error
    assert not (tmp_path / "runs").exists()  # refused before the output folder was made
    # validate refuses it too: a recipe it accepts runs.
    result = CliRunner().invoke(cli, ["validate", RECIPE, "--set",
                                      'log.backends=["jsonl", "tensorboard"]'])
    assert "the tensorboard logger needs" in cli_error(result)


def test_a_tracker_failing_at_start_leaves_nothing_and_the_retry_takes_the_name(
        tmp_path: Path, loaded: Components) -> None:
    code, error = run(tmp_path, 'log.backends=["jsonl", "failing"]')
    assert code == 1
    assert "the failing logger failed to start: ConnectionError" in error
    assert error.endswith("held no checkpoint and no metrics and was removed)")
    assert "nothing was left behind (" + str(tmp_path / "runs" / "try") in error
    assert not (tmp_path / "runs").exists()  # run.output_dir, made by this start, too
    assert run(tmp_path)[0] == 0
    assert runs(tmp_path) == ["try"]  # not try-2


def test_an_error_in_the_first_step_leaves_nothing(tmp_path: Path, loaded: Components) -> None:
    code, error = run(tmp_path, "losses.cycle.name=failing_loss")
    assert code == 1
    assert error.startswith("error: the loss found an unusable batch; nothing was left behind")
    (tmp_path / "runs" / "other").mkdir(parents=True)  # another run's: the folder stays
    code, error = run(tmp_path, "losses.cycle.name=failing_loss")
    assert code == 1 and "nothing was left behind" in error
    assert runs(tmp_path) == ["other"]


def test_a_run_that_recorded_steps_is_kept(tmp_path: Path, loaded: Components) -> None:
    code, error = run(tmp_path, "losses.cycle.name=failing_loss", "losses.cycle.at=2",
                      "train.log_every=1")
    assert code == 1
    assert error.endswith(f"{tmp_path / 'runs' / 'try'} was kept: it holds metrics.jsonl")
    assert runs(tmp_path) == ["try"]
    assert (tmp_path / "runs" / "try" / "metrics.jsonl").read_text().count('"step": 1') == 1


def test_resume_auto_removes_only_a_directory_it_made(tmp_path: Path,
                                                      loaded: Components) -> None:
    code, error = run(tmp_path, 'log.backends=["jsonl", "failing"]', resume="auto")
    assert code == 1 and "nothing was left behind" in error
    assert not (tmp_path / "runs").exists()
    # A directory that was there before (empty, as a job script may make it) stays.
    (tmp_path / "runs" / "try").mkdir(parents=True)
    code, error = run(tmp_path, 'log.backends=["jsonl", "failing"]', resume="auto")
    assert code == 1 and "left behind" not in error
    assert runs(tmp_path) == ["try"]


def test_discard_keeps_what_it_does_not_know_and_a_locked_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "samples").mkdir(parents=True)
    (run_dir / "recipe.toml").write_text("")
    (run_dir / "metrics.jsonl").write_text("")
    (run_dir / "tb").mkdir()  # a tracker's folder: another program's files
    assert discard_failed_start(run_dir) == ["tb/"]
    assert (run_dir / "recipe.toml").exists()
    (run_dir / "tb").rmdir()
    (run_dir / "samples" / "step_00000002.png").write_bytes(b"")
    assert discard_failed_start(run_dir) == ["samples/"]
    (run_dir / "samples" / "step_00000002.png").unlink()
    with lock_run_dir(run_dir):  # a process that took it meanwhile keeps it
        assert discard_failed_start(run_dir) == [".imtrans.lock (another process holds it)"]
    assert discard_failed_start(run_dir) == []
    assert not run_dir.exists()


def test_the_library_train_leaves_nothing_either(tmp_path: Path, loaded: Components) -> None:
    """imtrans.train (a loaded recipe and overrides) removes what its failed start made."""
    recipe = imtrans.load_recipe(RECIPE, [
        *(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in TINY_RUN.items()),
        "train.max_steps=2", f"run.output_dir='{tmp_path / 'runs'}'", "run.name='try'"],
        registry=loaded)
    with pytest.raises(DataError, match="unusable batch"):
        imtrans.train(recipe, ["losses.cycle.name=failing_loss"], registry=loaded)
    assert not (tmp_path / "runs").exists()
    result = imtrans.train(recipe, registry=loaded)
    assert result.run_dir == tmp_path / "runs" / "try"  # the same name, not try-2
