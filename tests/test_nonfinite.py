"""NaN and inf in training: found without a per-step sync, then a stop or a rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import train_tiny
from torch import nn

from imtrans.errors import NonFiniteError
from imtrans.runs.checkpoints.files import list_checkpoints, load_checkpoint
from imtrans.trainers.cyclegan import CycleGANTrainer
from imtrans.training.nonfinite import NonFiniteWatch
from imtrans.training.records import MetricsLog

#: Every step logged and saved is checked; a checkpoint every 2 steps to roll back to.
SETTINGS = {"train__checkpoint_every": 2, "train__log_every": 3, "train__sample_every": 100,
            "data__max_items": 4, "trainer__pool_size": 0}


def poison_steps(monkeypatch: pytest.MonkeyPatch, bad: set[int]) -> None:
    """Make the batch of each step in ``bad`` (1-based) NaN, as a broken image would."""
    original = CycleGANTrainer.training_step
    calls = {"n": 0}

    def step(self: CycleGANTrainer, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] in bad:
            batch = batch | {"A": torch.full_like(batch["A"], float("nan"))}
        return original(self, batch)

    monkeypatch.setattr(CycleGANTrainer, "training_step", step)


def test_the_watch_names_the_first_bad_step_and_term() -> None:
    watch = NonFiniteWatch()
    net = nn.Linear(2, 2)
    watch.add(1, {"G": torch.tensor(1.0), "D": torch.tensor(2.0)})
    watch.add(2, {"G": torch.tensor(float("inf")), "D": torch.tensor(2.0)})
    watch.add(3, {"G": torch.tensor(float("nan")), "D": torch.tensor(float("nan"))})
    fault = watch.check(3, {"gen": net})
    assert fault is not None and (fault.step, fault.terms, fault.networks) == (2, ["G"], [])
    assert "loss G became NaN or inf at step 2" in fault.describe()
    assert watch.check(4, {"gen": net}) is None  # the flags were read and cleared
    with torch.no_grad():
        net.weight[0, 0] = float("nan")
    fault = watch.check(5, {"gen": net})
    assert fault is not None and (fault.step, fault.terms, fault.networks) == (5, [], ["gen"])
    assert "a gradient was NaN or inf" in fault.describe()


def test_a_nan_stops_the_run_at_its_step_without_saving_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    poison_steps(monkeypatch, {5})
    with pytest.raises(NonFiniteError) as caught:
        train_tiny(tmp_path, "cyclegan_photo2monet", steps=12, **SETTINGS)
    message = str(caught.value)
    assert "at step 5" in message and "G_adv" in message and "cycle" in message
    assert "gen_ab" in message  # the NaN gradient reached the weights
    assert "step_00000004" in message and 'on_nonfinite = "rollback"' in message
    run_dir = next((tmp_path / "runs").iterdir())
    saved = list_checkpoints(run_dir / "checkpoints")
    assert [step for step, _ in saved] == [2, 4]  # step 6 was due but the model was broken
    weights = load_checkpoint(saved[-1][1]).tensors
    assert all(torch.isfinite(t).all() for k, t in weights.items() if k.startswith("net."))


def test_rollback_reloads_the_last_checkpoint_and_skips_the_bad_batches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    poison_steps(monkeypatch, {5})
    run_dir = train_tiny(tmp_path, "cyclegan_photo2monet", steps=12,
                         train__on_nonfinite="rollback", **SETTINGS)
    records = MetricsLog(run_dir / "metrics.jsonl").records()
    rollbacks = [r for r in records if "rollback" in r]
    assert len(rollbacks) == 1
    assert rollbacks[0]["step"] == 5 and rollbacks[0]["rollback"]["to_step"] == 4
    assert "G_adv" in rollbacks[0]["rollback"]["terms"]
    saved = list_checkpoints(run_dir / "checkpoints")
    assert saved[-1][0] == 12
    weights = load_checkpoint(saved[-1][1]).tensors
    assert all(torch.isfinite(t).all() for k, t in weights.items() if k.startswith("net."))
    logged = [r["losses"]["G"] for r in records if "losses" in r and r["step"] > 6]
    assert logged and all(value == value for value in logged)  # finite after the rollback


def test_rollbacks_are_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    poison_steps(monkeypatch, set(range(5, 100)))  # every batch from step 5 on is broken
    with pytest.raises(NonFiniteError, match="at step"):
        train_tiny(tmp_path, "cyclegan_photo2monet", steps=30, train__on_nonfinite="rollback",
                   train__max_rollbacks=2, **SETTINGS)
    run_dir = next((tmp_path / "runs").iterdir())
    records = MetricsLog(run_dir / "metrics.jsonl").records()
    assert len([r for r in records if "rollback" in r]) == 2
