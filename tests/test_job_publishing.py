"""The jobs of a run publish what they did in a step instead of holding each other; a whole run
(:mod:`imtrans.runner`) places evaluation and the report among the training floor's jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, TINY_RUN

import imtrans
from imtrans.catalogue.plugins import load_components
from imtrans.catalogue.recipe_loader import load_recipe
from imtrans.core import distributed
from imtrans.runner.jobs import EvaluationAndReport
from imtrans.runs.directory import RunDir
from imtrans.training import loop
from imtrans.training.build import build_training
from imtrans.training.jobs import Job, JobContext, JobList, Need, default_jobs
from imtrans.training.records import RunLog
from imtrans.training.state import Plan, TrainingState

PIX2PIX = ROOT / "recipes" / "pix2pix_edges2shoes.toml"
#: 20 bundled pairs at batch 4: 5 steps an epoch; PSNR needs no Inception weights.
SMALL = {**TINY_RUN, "generator.name": "unet", "generator.num_downs": 5,
         "data.batch_size": 4, "eval.metric": "psnr"}


def _sets(tmp_path: Path, **settings: object) -> list[str]:
    chosen = SMALL | {"run.output_dir": str(tmp_path)} | {
        key.replace("__", "."): value for key, value in settings.items()}
    return [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in chosen.items()]


class Published(Job):
    """Keeps, for every step, what the jobs before it published, and whether the report is
    there."""

    def __init__(self, run: Path) -> None:
        self.folder = run
        self.steps: dict[int, dict[str, Any]] = {}

    def due(self, state: TrainingState) -> bool:
        return True

    def run(self, state: TrainingState) -> None:
        published = state.published
        self.steps[state.step] = {
            "needs": set(published.needs), "record": published.record is not None,
            "samples": published.samples.name if published.samples else None,
            "checkpoint": published.checkpoint.name if published.checkpoint else None,
            "saved": state.saved_now, "eval": sorted(published.eval or {}),
            "report": (self.folder / "report.html").is_file()}


def test_every_step_publishes_what_its_jobs_did(tmp_path: Path) -> None:
    recipe = load_recipe(PIX2PIX, _sets(tmp_path, train__max_steps=7, train__log_every=3,
                                        train__sample_every=4, train__checkpoint_every=6,
                                        eval__every_epochs=1))
    seen = Published(tmp_path / "pix2pix_edges2shoes")
    result = imtrans.train(recipe, jobs=[seen])
    steps = seen.steps
    assert result.step == 7 and sorted(steps) == list(range(1, 8))
    # The record: after the first step, every log_every and at the last.
    assert [s for s in steps if steps[s]["record"]] == [1, 3, 6, 7]
    assert {s: steps[s]["samples"] for s in steps if steps[s]["samples"]} == {
        4: "step_00000004.png", 7: "step_00000007.png"}
    # Evaluation (epoch end 5, the end 7) needs the weights as a file: the checkpoint job
    # saved step 5 for it, off its own cadence (6 and the end).
    assert {s: steps[s]["checkpoint"] for s in steps if steps[s]["checkpoint"]} == {
        5: "step_00000005_epoch_0001.safetensors", 6: "step_00000006.safetensors",
        7: "step_00000007.safetensors"}
    assert [s for s in steps if steps[s]["saved"]] == [5, 6, 7]
    assert {s: steps[s]["eval"] for s in steps if steps[s]["eval"]} == {
        5: ["psnr", "ssim"], 7: ["psnr", "ssim"]}
    # What the due jobs needed, told before any of them ran (the NaN check reads it).
    assert steps[2]["needs"] == set() and steps[4]["needs"] == set()
    assert steps[3]["needs"] == steps[6]["needs"] == {Need.FINITE_CHECK}
    assert steps[5]["needs"] == steps[7]["needs"] == {Need.FINITE_CHECK, Need.CHECKPOINT}
    # The report exists from the first record on (step 1, though log_every is 3).
    assert all(step["report"] for step in steps.values())
    best = json.loads((result.run_dir / "checkpoints" / "best.json").read_text())
    assert best["step"] in (5, 7) and best["metric"] == "psnr"


def test_a_whole_run_places_evaluation_and_the_report_among_the_training_jobs(
        tmp_path: Path) -> None:
    registry = load_components(autoload=False)
    recipe = load_recipe(PIX2PIX, _sets(tmp_path, eval__every_epochs=1), registry=registry)
    ddp = distributed.join(torch.device("cpu"))
    training = build_training(recipe, registry, device=ddp.device, ddp=ddp)
    extra = EvaluationAndReport(recipe, registry, [Published(tmp_path)])
    warnings = extra.prepare(training, ddp)
    assert any("fewer than 50" in note for note in warnings)  # 5 val images
    run = RunDir(tmp_path / "run")
    context = JobContext(training, run, ddp, imtrans.TrainingObserver(), {},
                         log=RunLog(run.metrics))
    jobs = default_jobs(context, extra)
    assert [type(job).__name__ for job in jobs] == [
        "NonFiniteCheck", "LogRecord", "Progress", "SampleGrid", "EpochEnd", "CheckpointJob",
        "EvaluationJob", "Trackers", "ReportJob", "StopVote", "Published"]
    # No job holds another: they meet on the state only.
    for job in jobs:
        held = [value for value in vars(job).values()
                if isinstance(value, Job) or (isinstance(value, list | tuple)
                                              and any(isinstance(v, Job) for v in value))]
        assert held == [], type(job).__name__
    # Without the records of the writing process (another rank), neither joins.
    other = JobContext(training, run, ddp, imtrans.TrainingObserver(), {}, log=None)
    assert "EvaluationJob" not in [type(job).__name__ for job in default_jobs(other, extra)]
    assert "ReportJob" not in [type(job).__name__ for job in default_jobs(other, extra)]


def test_the_training_floor_alone_trains_without_evaluation_or_report(tmp_path: Path) -> None:
    recipe = load_recipe(PIX2PIX, _sets(tmp_path, train__max_steps=5, eval__every_epochs=1))
    result = loop.fit(recipe)
    assert result.step == 5 and result.checkpoint is not None
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    assert records and not [r for r in records if "eval" in r]
    assert not (result.run_dir / "report.html").exists()
    assert not (result.run_dir / "checkpoints" / "best.json").exists()


class _Needing(Job):
    def __init__(self, needs: frozenset[Need], due: bool) -> None:
        self.needs, self.is_due = needs, due  # type: ignore[misc]
        self.ran_with: set[Need] | None = None

    def due(self, state: TrainingState) -> bool:
        return self.is_due

    def run(self, state: TrainingState) -> None:
        self.ran_with = set(state.published.needs)


@pytest.mark.parametrize("second_due", [True, False])
def test_the_needs_of_the_due_jobs_are_published_before_the_first_runs(second_due: bool) -> None:
    state = TrainingState(Plan(steps_per_epoch=5, total_steps=10, epochs=2, global_batch=1))
    state.advance({"G": torch.tensor(1.0)})
    first = _Needing(frozenset(), due=True)
    second = _Needing(frozenset({Need.CHECKPOINT}), due=second_due)
    idle = _Needing(frozenset({Need.FINITE_CHECK}), due=False)
    JobList([first, second, idle]).after_step(state)
    assert first.ran_with == ({Need.CHECKPOINT} if second_due else set())
    assert idle.ran_with is None
    state.advance({"G": torch.tensor(1.0)})  # a new step publishes nothing yet
    assert state.published.needs == frozenset() and not state.saved_now
