"""Watching a run: progress from the first step, plain lines and train.log, nothing lost on a
stop, logger backends through the plugin hook, the Python entry point."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

import imtrans
from imtrans.catalogue.plugins import load_components
from imtrans.core.eta import ProgressStatus
from imtrans.core.observer import TrainingObserver
from imtrans.errors import NonFiniteError, RecipeError, TrainingInterrupted
from imtrans.trainers.cyclegan import CycleGANTrainer

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu", "data.max_items=4", "trainer.pool_size=0"]
#: A progress line: step, epoch, speed, ETA (the losses follow from the first record on).
LINE = re.compile(r"step (\d+)/(\d+) \(\d+%\)  epoch \d+/\d+  "
                  r"[\d.]+ (img/s|s/step)  eta \d+:\d\d:\d\d  .*\bG [\d.e+-]+")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env["IMTRANS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


def _sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _recipe(tmp_path: Path, *overrides: str) -> imtrans.Recipe:
    return imtrans.load_recipe(CYCLEGAN, [*TINY, f"run.output_dir={tmp_path / 'runs'}",
                                          *overrides])


# Progress lines and the log file.

def test_a_redirected_run_prints_progress_lines_and_writes_them_to_train_log(tmp_path: Path
                                                                              ) -> None:
    out = tmp_path / "console.txt"
    with out.open("w") as file:
        proc = subprocess.run(
            [sys.executable, "-m", "imtrans", "run", CYCLEGAN,
             *_sets(*TINY, "train.max_steps=5", "train.log_every=100",
                    "train.print_every_seconds=0.001")],
            cwd=tmp_path, env=_env(), stdout=file, stderr=subprocess.STDOUT, timeout=600)
    console = out.read_text()
    assert proc.returncode == 0, console
    run_dir = tmp_path / "runs" / "cyclegan_photo2monet"
    assert "run directory: runs/cyclegan_photo2monet\n" in console
    steps = [int(m.group(1)) for m in LINE.finditer(console)]
    assert steps == [1, 2, 3, 4, 5], console  # every step, as printing is due every 1 ms
    assert all(m.group(2) == "5" for m in LINE.finditer(console))
    assert "\x1b[" not in console  # no live bar's control codes in a file
    logged = (run_dir / "train.log").read_text()
    assert [int(m.group(1)) for m in LINE.finditer(logged)] == [1, 2, 3, 4, 5]
    # Each line of the log is time-stamped, then the console's line.
    first = next(line for line in logged.splitlines() if "step 1/5" in line)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  step 1/5", first), first
    assert first.split("  ", 1)[1] in console


def test_the_first_record_comes_after_the_first_step(tmp_path: Path) -> None:
    result = imtrans.train(_recipe(tmp_path, "train.max_steps=3", "train.log_every=50"))
    records = _records(result.run_dir)
    assert [r["step"] for r in records] == [1, 3]
    assert all(0 <= r["data_wait_fraction"] <= 1 for r in records)
    assert set(records[0]["losses"]) >= {"G", "D_A", "D_B"}
    assert (result.run_dir / "report.html").is_file()


def test_the_status_shows_seconds_per_step_below_one_image_a_second() -> None:
    slow = ProgressStatus(step=3, total_steps=10, epoch=1, epochs=2, images_per_sec=0.25,
                          eta_seconds=28.0, losses={"G": 2.5}, images_per_step=1)
    assert slow.line() == "step 3/10 (30%)  epoch 1/2  4.0 s/step  eta 0:00:28  G 2.5"
    fast = ProgressStatus(step=1, total_steps=4, epoch=1, epochs=1, images_per_sec=None,
                          eta_seconds=None)
    assert fast.line() == "step 1/4 (25%)  epoch 1/1  - img/s  eta -"


def test_the_rich_display_prints_lines_only_off_a_terminal() -> None:
    import io

    from rich.console import Console

    from imtrans.cli.progress import RichProgress

    for terminal in (False, True):
        buffer = io.StringIO()
        shown = RichProgress(Console(file=buffer, force_terminal=terminal, width=200))
        shown.on_start(total_steps=4, start_step=0, steps_per_epoch=2, epochs=2,
                       images_per_step=1)
        shown.on_status(ProgressStatus(step=1, total_steps=4, epoch=1, epochs=2,
                                       images_per_sec=0.5, eta_seconds=6.0, losses={"G": 1.0}))
        shown.on_progress_line("step 1/4 PLAIN")
        shown.on_end()
        text = buffer.getvalue()
        assert ("step 1/4 PLAIN" in text) is not terminal
        if terminal:  # the bar carries the same figures
            assert "2.0 s/step" in text and "eta 0:00:06" in text and "G 1" in text


# Nothing lost on a stop.

def test_ctrl_c_at_an_early_step_leaves_metrics_a_report_and_a_checkpoint(tmp_path: Path
                                                                          ) -> None:
    args = [sys.executable, "-m", "imtrans", "run", CYCLEGAN,
            *_sets(*TINY, "train.max_steps=100000", "train.log_every=1000",
                   "train.print_every_seconds=0.001")]
    proc = subprocess.Popen(args, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "runs" / "cyclegan_photo2monet"
    deadline = time.monotonic() + 300
    while not (run_dir / "train.log").exists() or "step 3/" not in (
            run_dir / "train.log").read_text():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "Ctrl-C: stopping after this step" in stderr
    step = int(re.search(r"interrupted at step (\d+)", stderr).group(1))  # type: ignore[union-attr]
    records = _records(run_dir)
    assert records[0]["step"] == 1 and "partial" not in records[0]
    assert records[-1]["step"] == step and records[-1]["partial"] is True
    assert records[-1]["losses"]["G"] > 0
    assert list((run_dir / "checkpoints").glob(f"step_{step:08d}*.safetensors"))
    report = (run_dir / "report.html").read_text()
    assert 'http-equiv="refresh"' not in report  # a stopped run's page stops reloading
    assert "stopping after this step" in (run_dir / "train.log").read_text()


def _interrupt_twice_in_step(monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    """Press Ctrl-C twice during step ``at``: the second stops the step itself."""
    original = CycleGANTrainer.training_step
    calls = {"n": 0}

    def step(self: CycleGANTrainer, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] == at:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, batch)

    monkeypatch.setattr(CycleGANTrainer, "training_step", step)


class _Notices(TrainingObserver):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)

    def on_stopping(self, reason: str) -> None:
        self.lines.append(reason)


def test_a_second_ctrl_c_stops_at_once_without_saving_the_half_done_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _interrupt_twice_in_step(monkeypatch, at=3)
    notices = _Notices()
    with pytest.raises(TrainingInterrupted, match="during step 3, which is not saved"):
        imtrans.train(_recipe(tmp_path, "train.max_steps=10", "train.log_every=100",
                              "train.checkpoint_every=2"), observer=notices)
    assert any("stopping after this step" in line for line in notices.lines)
    run_dir = tmp_path / "runs" / "cyclegan_photo2monet"
    saved = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))
    assert saved == ["step_00000002.safetensors"]  # step 3 started, never finished
    records = _records(run_dir)
    assert [(r["step"], r.get("partial", False)) for r in records] == [(1, False), (2, True)]
    assert (run_dir / "report.html").is_file()


def test_a_nan_stop_keeps_the_partial_record_and_the_report(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    original = CycleGANTrainer.training_step
    calls = {"n": 0}

    def poisoned(self: CycleGANTrainer, batch: dict[str, torch.Tensor]
                 ) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] == 3:
            batch = batch | {"A": torch.full_like(batch["A"], float("nan"))}
        return original(self, batch)

    monkeypatch.setattr(CycleGANTrainer, "training_step", poisoned)
    with pytest.raises(NonFiniteError):
        imtrans.train(_recipe(tmp_path, "train.max_steps=10", "train.log_every=4"))
    run_dir = tmp_path / "runs" / "cyclegan_photo2monet"
    records = _records(run_dir)
    assert [r["step"] for r in records] == [1, 4]
    assert records[-1]["partial"] is True and math.isnan(records[-1]["losses"]["G"])
    assert (run_dir / "report.html").is_file()
    assert not list((run_dir / "checkpoints").glob("step_*"))  # nothing broken is kept


# Logger backends through the plugin hook.

class MemoryLogger:
    """A logger backend that keeps what it receives (the test's view of the seam)."""

    instances: ClassVar[list[MemoryLogger]] = []

    def __init__(self, *, run_dir: Path, label: str = "memory") -> None:
        self.run_dir, self.label = run_dir, label
        self.hyperparameters: dict[str, Any] = {}
        self.scalars: dict[int, dict[str, float]] = {}
        self.images: list[tuple[int, str, Path]] = []
        self.closed = 0
        MemoryLogger.instances.append(self)

    def log_hyperparameters(self, resolved_recipe: dict[str, Any]) -> None:
        self.hyperparameters = dict(resolved_recipe)

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        self.scalars.setdefault(step, {}).update(values)

    def log_image(self, step: int, name: str, path: Path) -> None:
        assert path.is_file()  # sent after it was written
        self.images.append((step, name, path))

    def close(self) -> None:
        self.closed += 1


class MissingPackageLogger:
    """A backend whose package is not installed."""

    def __init__(self, *, run_dir: Path) -> None:
        from imtrans.loggers import import_extra

        import_extra("imtrans_no_such_package", logger="missing", extra="missing")


class LoggerPlugin:
    @staticmethod
    @imtrans.hookimpl
    def register_loggers(register: imtrans.RegisterFn) -> None:
        register("memory", MemoryLogger)
        register("missing", MissingPackageLogger)


@pytest.fixture
def registry() -> imtrans.Components:
    MemoryLogger.instances.clear()
    return load_components(autoload=False, extra_plugins=[("memory-logger", LoggerPlugin())])


def test_a_logger_plugin_receives_the_recipe_scalars_and_samples(
        tmp_path: Path, registry: imtrans.Components) -> None:
    recipe = imtrans.load_recipe(CYCLEGAN, [
        *TINY, f"run.output_dir={tmp_path / 'runs'}", "train.max_steps=4", "train.log_every=2",
        "train.sample_every=2", 'log.backends=["jsonl", "memory"]', 'log.memory.label="mine"'],
        registry=registry)
    assert recipe.resolved()["log"] == {"backends": ["jsonl", "memory"],
                                        "preview_window": "auto", "memory": {"label": "mine"}}
    result = imtrans.train(recipe, registry=registry)
    (logger,) = MemoryLogger.instances
    assert logger.run_dir == result.run_dir and logger.label == "mine"
    assert logger.hyperparameters == recipe.resolved()
    records = {r["step"]: r for r in _records(result.run_dir)}
    assert sorted(logger.scalars) == sorted(records) == [1, 2, 4]
    for step, record in records.items():  # the very values of metrics.jsonl
        sent = logger.scalars[step]
        assert sent["lr"] == record["lr"] and sent["images_per_sec"] == record["images_per_sec"]
        assert sent["data_wait_fraction"] == record["data_wait_fraction"]
        assert {k[len("loss/"):]: v for k, v in sent.items() if k.startswith("loss/")} \
            == record["losses"]
    assert [(step, name) for step, name, _ in logger.images] == [(2, "samples"), (4, "samples")]
    assert logger.closed == 1


def test_a_logger_that_cannot_start_stops_the_run_before_training(
        tmp_path: Path, registry: imtrans.Components) -> None:
    recipe = imtrans.load_recipe(CYCLEGAN, [*TINY, f"run.output_dir={tmp_path / 'runs'}",
                                            'log.backends=["memory", "missing"]'],
                                 registry=registry)
    with pytest.raises(imtrans.ImtransError,
                       match=r"the missing logger needs the 'imtrans_no_such_package' package"
                             r".*pip install 'imtrans\[missing\]'"):
        imtrans.train(recipe, registry=registry)
    run_dir = tmp_path / "runs" / "cyclegan_photo2monet"
    metrics = run_dir / "metrics.jsonl"
    assert not metrics.exists() or not metrics.read_text()  # not one step trained
    assert not list((run_dir / "checkpoints").glob("*"))
    assert [m.closed for m in MemoryLogger.instances] == [1]  # the started one is closed


@pytest.mark.parametrize(("overrides", "message"), [
    (['log.backends=["nope"]'], "log.backends: .*'nope'"),
    (['log.memory.label="x"'], r"\[log.memory\]: 'memory' is not in log.backends"),
    (['log.backends=["memory"]', "log.memory.lable=1"],
     r"\[log.memory\]: unexpected argument 'lable' \(did you mean 'label'\?\)"),
    (['log.backends=["memory"]', 'log.memory.run_dir="/tmp"'],
     r"\[log.memory\]: run_dir is set by the run"),
    (['log.backends=["memory", "memory"]'], "a backend is named twice"),
], ids=["unknown", "table-without-backend", "misspelt", "run-dir", "twice"])
def test_the_log_table_is_checked_when_the_recipe_loads(
        registry: imtrans.Components, overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        imtrans.load_recipe(CYCLEGAN, overrides, registry=registry)


def test_every_registered_logger_takes_run_dir_and_typed_keyword_options() -> None:
    import inspect

    loggers = load_components().loggers
    assert {"tensorboard", "wandb", "mlflow"} <= set(loggers.names())
    for name in loggers.names():
        parameters = inspect.signature(loggers.get(name).builder).parameters
        assert "run_dir" in parameters, name
        assert all(p.kind is p.KEYWORD_ONLY for p in parameters.values()), name


# Defaults.

@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 2), (16, 4)])
def test_loading_processes_default_to_the_cpus_at_most_four(
        monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert imtrans.load_recipe(CYCLEGAN).data.num_workers == workers
    assert imtrans.load_recipe(CYCLEGAN, ["data.num_workers=3"]).data.num_workers == 3
