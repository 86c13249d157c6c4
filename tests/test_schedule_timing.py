"""``[schedule] timing``: the linear decay at imtrans's timing and at the official code's, epoch
by epoch, and a resume that continues either exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
import torch
from conftest import train_tiny

from imtrans.catalogue.plugins import Components, load_components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.errors import RecipeError
from imtrans.recipe import Recipe, ScheduleTable
from imtrans.trainers import Trainer
from imtrans.training import checkpointing as training_state
from imtrans.training.build import build_training
from imtrans.training.schedules import LRSchedule

Timing = Literal["imtrans", "official"]

N_EPOCHS, N_EPOCHS_DECAY = 3, 3

#: The factor of optim.lr each epoch trains at (epochs 1 to 6), n_epochs 3, n_epochs_decay 3.
#: imtrans: 1 - max(0, e - 3) / 4, the official formula applied after each epoch.
IMTRANS = [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]
#: official: 1 - max(0, e + 1 - 3) / 4, its LambdaLR stepped before each epoch.
OFFICIAL = [1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
#: n_epochs 1, n_epochs_decay 2 at the official timing: 1 - max(0, e + 1 - 1) / 3.
OFFICIAL_1_2 = [2 / 3, 1 / 3, 0.0]


@pytest.fixture(scope="module")
def builtins() -> Components:
    return load_components(autoload=False)


def factors(timing: Timing) -> list[float]:
    table = ScheduleTable(n_epochs=N_EPOCHS, n_epochs_decay=N_EPOCHS_DECAY, timing=timing)
    schedule = LRSchedule(table, [])
    return [schedule.factor(epoch) for epoch in range(N_EPOCHS + N_EPOCHS_DECAY)]


def official_loop_rates(lr: float, *, step_first: bool) -> list[float]:
    """The rate of each epoch in the official loop: its get_scheduler('linear') with
    epoch_count 1, the scheduler stepped before each epoch (today) or after it (before)."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)

    def lambda_rule(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - N_EPOCHS) / float(N_EPOCHS_DECAY + 1)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lambda_rule)
    rates = []
    for _ in range(N_EPOCHS + N_EPOCHS_DECAY):
        if step_first:
            optimizer.step()  # keeps torch from warning that the scheduler steps first
            scheduler.step()
        rates.append(float(optimizer.param_groups[0]["lr"]))
        if not step_first:
            optimizer.step()
            scheduler.step()
    return rates


def test_the_default_timing_is_imtrans_and_keeps_its_rates() -> None:
    assert ScheduleTable().timing == "imtrans"
    assert factors("imtrans") == IMTRANS


def test_official_timing_gives_the_official_rates() -> None:
    assert factors("official") == OFFICIAL


@pytest.mark.parametrize(("timing", "step_first"), [("official", True), ("imtrans", False)])
def test_each_timing_matches_the_official_loop_exactly(timing: Timing, step_first: bool) -> None:
    gen = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    table = ScheduleTable(n_epochs=N_EPOCHS, n_epochs_decay=N_EPOCHS_DECAY, timing=timing)
    schedule = LRSchedule(table, [gen])
    rates = []
    for epoch in range(N_EPOCHS + N_EPOCHS_DECAY):
        schedule.begin_epoch(epoch)
        rates.append(schedule.lr)
    assert rates == official_loop_rates(2e-4, step_first=step_first)  # the same floats


def test_official_timing_needs_the_linear_policy(builtins: Components) -> None:
    raw = {"trainer": {"name": "cyclegan"}, "data": {"root": "unused"},
           "schedule": {"policy": "cosine", "timing": "official"}}
    with pytest.raises(RecipeError, match=r'schedule\.timing .*needs policy "linear"'):
        recipe_from_dict(raw, registry=builtins)


def test_the_timing_is_in_the_recipe_not_in_the_schedule_state() -> None:
    # Checkpoints store the schedule state; its keys stay what older checkpoints hold.
    state = LRSchedule(ScheduleTable(timing="official"), []).state()
    assert set(state) == {"plateau_factor", "plateau_best", "plateau_bad_epochs"}


def tiny_recipe(builtins: Components) -> Recipe:
    return recipe_from_dict({"trainer": {"name": "cyclegan"}, "data": {"root": "unused"},
                             "generator": {"ngf": 4}, "discriminator": {"ndf": 4},
                             "schedule": {"n_epochs": 1, "n_epochs_decay": 2,
                                          "timing": "official"}}, registry=builtins)


def test_resume_continues_the_official_timing_exactly(builtins: Components,
                                                      tmp_path: Path) -> None:
    recipe = tiny_recipe(builtins)
    batches = [{"A": torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)),
                "B": torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(9 + i))}
               for i in range(2)]

    def fresh() -> tuple[Trainer, LRSchedule]:
        torch.manual_seed(0)
        training = build_training(recipe, builtins, device=torch.device("cpu"), data=False,
                                  speed=False)
        return training.trainer, training.schedule

    straight, schedule = fresh()
    schedule.begin_epoch(1)  # the second epoch: already decaying at the official timing
    straight.training_step(batches[0])
    path = training_state.save(tmp_path, straight, schedule, 1, 1, recipe, {})
    straight.training_step(batches[1])
    rate = schedule.lr

    resumed, schedule = fresh()
    assert training_state.restore(path, resumed, schedule, recipe, torch.device("cpu")) == 1
    schedule.begin_epoch(1)  # the loop enters the epoch the step falls in
    assert schedule.lr == rate == pytest.approx(2e-4 * OFFICIAL_1_2[1])
    resumed.training_step(batches[1])
    for name, module in straight.modules().items():
        for a, b in zip(module.parameters(), resumed.modules()[name].parameters(), strict=True):
            assert torch.equal(a, b), name


def test_a_run_records_the_official_rates_epoch_by_epoch(tmp_path: Path) -> None:
    # Two images of each domain from the bundled sample: 2 steps per epoch.
    run_dir = train_tiny(tmp_path, "cyclegan_photo2monet", steps=6, data__max_items=2,
                         train__sample_every=100, schedule__n_epochs=1,
                         schedule__n_epochs_decay=2, schedule__timing="official")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    rates = {r["epoch"]: r["lr"] for r in map(json.loads, lines) if "lr" in r}
    assert rates == {e + 1: pytest.approx(2e-4 * f) for e, f in enumerate(OFFICIAL_1_2)}
