"""What a run says and records about itself: progress lines with current losses, a record
spacing that suits short runs, what a short run's result is, and every notice in train.log
(with the bundled-sample fallback in the run's record)."""

from __future__ import annotations

import json
import math
import os
import signal
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import imtrans
from imtrans.catalogue.recipe_loader import load_recipe
from imtrans.cli import cli
from imtrans.core.eta import ProgressStatus
from imtrans.core.observer import TrainingObserver
from imtrans.runner.summary import short_run_lines
from imtrans.trainers.cyclegan import CycleGANTrainer
from imtrans.training.records import LossMeter

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu", "data.max_items=4", "trainer.pool_size=0",
        "train.sample_every=1000"]


def _recipe(tmp_path: Path, *overrides: str) -> imtrans.Recipe:
    return imtrans.load_recipe(CYCLEGAN, [*TINY, f"run.output_dir={tmp_path / 'runs'}",
                                          *overrides])


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


class _Statuses(TrainingObserver):
    """The losses of every progress line, as the engine computed them."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, dict[str, float]]] = []
        self.status: ProgressStatus | None = None

    def on_status(self, status: ProgressStatus) -> None:
        self.status = status

    def on_progress_line(self, line: str) -> None:
        assert self.status is not None and line == self.status.line()
        self.lines.append((self.status.step, dict(self.status.losses)))


# Progress lines: the losses since the previous line.

def test_progress_lines_show_the_losses_since_the_previous_line(tmp_path: Path) -> None:
    # One record per step gives each step's own losses, to compare the lines with.
    each = imtrans.train(_recipe(tmp_path / "each", "train.max_steps=6", "train.log_every=1"))
    per_step = {r["step"]: r["losses"] for r in _records(each.run_dir)}
    # Records at steps 1 and 6 only; a line after every step (every millisecond).
    shown = _Statuses()
    imtrans.train(_recipe(tmp_path / "lines", "train.max_steps=6", "train.log_every=100",
                          "train.print_every_seconds=0.001"), observer=shown)
    assert [step for step, _ in shown.lines] == [1, 2, 3, 4, 5, 6]
    for step, losses in shown.lines:  # a line a step: the mean over that one step
        assert losses.keys() == per_step[step].keys()
        for term, value in losses.items():
            assert math.isclose(value, per_step[step][term], rel_tol=1e-5), (step, term)
    generator = [losses["G"] for _, losses in shown.lines]
    assert len(set(generator)) == len(generator)  # they change from line to line


def test_a_line_averages_the_steps_since_the_previous_line_across_records() -> None:
    import torch

    from imtrans.training.jobs.record import LineLosses
    from imtrans.training.state import Plan, TrainingState

    state = TrainingState(Plan(steps_per_epoch=10, total_steps=10, epochs=1, global_batch=1))
    line = LineLosses()

    def steps(*values: float) -> None:
        for value in values:
            state.advance({"G": torch.tensor(value)})

    steps(1.0, 2.0, 3.0)
    assert line.read(state) == pytest.approx({"G": 2.0})  # steps 1-3
    steps(5.0, 7.0)
    assert line.read(state) == pytest.approx({"G": 6.0})  # steps 4-5, not 1-5
    # The record's window was not touched.
    assert state.losses.flush() == pytest.approx({"G": 18.0 / 5})
    assert line.read(state) == pytest.approx({"G": 6.0})  # no step since: the same
    steps(10.0)
    state.losses.flush()  # a record in the step of the line
    assert line.read(state) == pytest.approx({"G": 10.0})  # step 6 alone
    steps(4.0)
    state.losses.flush()
    steps(8.0)
    assert line.read(state) == pytest.approx({"G": 6.0})  # steps 7-8, across the record at step 7
    steps(1.0)
    state.losses.flush()
    steps(2.0)
    state.losses.flush()
    steps(3.0)
    assert line.read(state) == pytest.approx({"G": 3.0})  # two records since: since the latest


def test_peeking_at_the_loss_sums_leaves_them_as_they_were() -> None:
    import torch

    meter = LossMeter()
    meter.add({"G": torch.tensor(1.5), "D": torch.tensor(0.25)})
    meter.add({"G": torch.tensor(2.5), "D": torch.tensor(0.75)})
    assert meter.peek() == ({"G": 4.0, "D": 1.0}, 2) and meter.windows == 0
    assert meter.flush() == {"G": 2.0, "D": 0.5} and meter.windows == 1
    assert meter.peek() == ({}, 0)


def test_the_metrics_record_is_the_same_whatever_the_progress_lines(tmp_path: Path) -> None:
    runs = [imtrans.train(_recipe(tmp_path / name, "train.max_steps=7", "train.log_every=3",
                                  f"train.print_every_seconds={every}"), observer=_Statuses())
            for name, every in (("lines", 0.001), ("quiet", 1e6))]
    lines, quiet = (_records(run.run_dir) for run in runs)
    assert [r["step"] for r in lines] == [r["step"] for r in quiet] == [1, 3, 6, 7]
    assert [r["losses"] for r in lines] == [r["losses"] for r in quiet]  # bit for bit


# train.log_every "auto".

def test_auto_log_every_gives_a_short_run_about_20_records(tmp_path: Path) -> None:
    result = imtrans.train(_recipe(tmp_path, "train.max_steps=45"))
    steps = [r["step"] for r in _records(result.run_dir)]
    assert steps == [1, *range(2, 45, 2), 45]  # 45 // 20 = 2 steps apart: 24 records
    recorded = tomllib.loads((result.run_dir / "recipe.toml").read_text())
    assert recorded["train"]["log_every"] == 2  # the number used, not "auto"


def test_a_log_every_the_recipe_states_is_kept(tmp_path: Path) -> None:
    result = imtrans.train(_recipe(tmp_path, "train.max_steps=20", "train.log_every=50"))
    assert [r["step"] for r in _records(result.run_dir)] == [1, 20]


def test_a_resumed_run_keeps_the_log_every_auto_gave_it(tmp_path: Path) -> None:
    first = imtrans.train(_recipe(tmp_path, "train.max_steps=20"))
    assert [r["step"] for r in _records(first.run_dir)] == list(range(1, 21))
    # Longer now: auto alone would give 40 // 20 = 2; the run goes on with its 1.
    resumed = imtrans.train(_recipe(tmp_path, "train.max_steps=40"), resume=first.run_dir)
    assert resumed.run_dir == first.run_dir
    assert [r["step"] for r in _records(first.run_dir)] == list(range(1, 41))


def test_validate_print_says_auto() -> None:
    result = CliRunner().invoke(cli, ["validate", CYCLEGAN, "--print"])
    assert result.exit_code == 0, result.output
    assert 'log_every = "auto"' in result.output


# The end of a short run, and every notice in train.log.

def test_a_short_run_ends_saying_it_is_a_smoke_test_and_what_a_real_run_needs() -> None:
    full = load_recipe(CYCLEGAN)
    lines = short_run_lines(20, full, "recipes/cyclegan_photo2monet.toml")
    assert lines[0].startswith("20 steps is a smoke test: it shows that everything runs")
    assert "noise until a few thousand steps" in lines[0]
    assert ("`imtrans run recipes/cyclegan_photo2monet.toml` without --set): 200 epochs (100 "
            "at lr 0.0002, then 100 with linear decay), 256x256 crops of 286x286 images, "
            "batch 1, generator resnet_9blocks, on a GPU.") in lines[1]
    assert short_run_lines(1000, full, "recipes/cyclegan_photo2monet.toml") == []


def test_a_recipe_run_as_written_is_not_called_a_smoke_test() -> None:
    from imtrans.cli.run import _short_run_lines

    recipe = load_recipe(CYCLEGAN)
    shortened = _short_run_lines(20, CYCLEGAN, ("train.max_steps=20",), recipe)
    assert shortened[0].startswith("20 steps is a smoke test")
    as_written = _short_run_lines(20, CYCLEGAN, (), recipe)
    assert as_written == ["The full dataset: `imtrans data download monet2photo` puts it in "
                          "datasets/monet2photo (missing: the bundled sample stood in)."]


def test_the_dataset_line_is_for_runs_on_the_bundled_sample(tmp_path: Path) -> None:
    full = load_recipe(CYCLEGAN)  # its datasets/monet2photo is missing here
    on_sample = short_run_lines(20, full, CYCLEGAN, run=full)
    assert on_sample[-1] == ("The full dataset: `imtrans data download monet2photo` puts it in "
                             "datasets/monet2photo (missing: the bundled sample stood in).")
    own = load_recipe(CYCLEGAN, [f"data.root={tmp_path}"])  # a folder of the user's
    assert len(short_run_lines(20, full, CYCLEGAN, run=own)) == 2


def test_every_notice_of_imtrans_run_is_in_train_log(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # datasets/monet2photo is missing: the bundled sample
    args = ["run", CYCLEGAN, *(a for o in TINY for a in ("--set", o)),
            "--set", "train.max_steps=3"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "cyclegan_photo2monet"
    logged = (run_dir / "train.log").read_text()
    said = [line for line in result.output.splitlines()
            if line and not line.startswith("step ")]
    for line in said:  # every notice printed, in the order printed
        assert f"  {line}\n" in logged, line
    assert "bundled sample of monet2photo (20 + 20 images)" in said[0]
    assert said[-4].startswith("finished at step 3: runs/cyclegan_photo2monet")
    assert said[-3].startswith("3 steps is a smoke test")
    assert said[-1].startswith("The full dataset: `imtrans data download monet2photo`")
    # The run's record says what it trained on.
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["data"]["source"] == "bundled sample"
    assert environment["data"]["root"] == "datasets/monet2photo"
    assert Path(environment["data"]["used"], "trainA").is_dir()
    recorded = (run_dir / "recipe.toml").read_text()
    assert recorded.startswith("# data: datasets/monet2photo not found: training on the "
                               "bundled sample of monet2photo")
    assert tomllib.loads(recorded)["data"]["root"] == "datasets/monet2photo"


def test_an_interrupted_run_says_so_in_train_log(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    original, calls = CycleGANTrainer.training_step, {"n": 0}

    def step(self: CycleGANTrainer, batch: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 2:  # Ctrl-C in step 2: the run stops after it
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, batch)

    monkeypatch.setattr(CycleGANTrainer, "training_step", step)
    monkeypatch.chdir(tmp_path)
    args = ["run", CYCLEGAN, *(a for o in TINY for a in ("--set", o)),
            "--set", "train.max_steps=10"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 130, result.output
    logged = (tmp_path / "runs" / "cyclegan_photo2monet" / "train.log").read_text()
    assert (f"interrupted at step 2; checkpoint saved to runs/cyclegan_photo2monet/checkpoints/"
            f"step_00000002.safetensors. Resume with: imtrans run {CYCLEGAN} --set ") in logged
    assert "finished" not in logged


def test_the_error_that_stops_a_run_is_in_train_log(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    original = CycleGANTrainer.training_step

    def poisoned(self: CycleGANTrainer, batch: dict[str, Any]) -> dict[str, Any]:
        return original(self, batch | {"A": torch.full_like(batch["A"], float("nan"))})

    monkeypatch.setattr(CycleGANTrainer, "training_step", poisoned)
    monkeypatch.chdir(tmp_path)
    args = ["run", CYCLEGAN, *(a for o in TINY for a in ("--set", o)),
            "--set", "train.max_steps=3"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code != 0, result.output
    error = next(line for line in result.output.splitlines() if line.startswith("error: "))
    logged = (tmp_path / "runs" / "cyclegan_photo2monet" / "train.log").read_text()
    recorded = [line.split("  ", 1)[1] for line in logged.splitlines() if "  error: " in line]
    # The line printed, less what the command adds after (what a failed start left).
    assert len(recorded) == 1 and "became NaN" in recorded[0] and error.startswith(recorded[0])
