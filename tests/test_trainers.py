"""Trainer steps, the image pool and the learning-rate schedules, on tiny tensors."""

from __future__ import annotations

import itertools

import pytest
import torch

from imtrans.assembly import build_losses, build_networks, build_trainer
from imtrans.engine.schedules import LRSchedule
from imtrans.plugins import Components, load_components
from imtrans.recipe import ScheduleTable, recipe_from_dict
from imtrans.trainers.image_pool import ImagePool


@pytest.fixture(scope="module")
def builtins() -> Components:
    return load_components(autoload=False)


def tiny(trainer: str, builtins: Components, **sections: dict):
    raw = {"trainer": {"name": trainer}, "data": {"root": "unused"},
           "generator": {"ngf": 4}, "discriminator": {"ndf": 4}} | sections
    if trainer == "pix2pix":
        raw["generator"] |= {"name": "unet", "num_downs": 5}
    recipe = recipe_from_dict(raw, registry=builtins)
    trainer_obj = build_trainer(recipe, builtins)
    trainer_obj.setup(build_networks(recipe, builtins), build_losses(recipe, builtins),
                      {k: t.on or k for k, t in recipe.losses.items()}, recipe.optim)
    return trainer_obj


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1,
            "B": torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1}


def test_cyclegan_step_updates_all_four_networks_and_reports_terms(builtins) -> None:
    torch.manual_seed(0)
    trainer = tiny("cyclegan", builtins)
    before = {n: [p.clone() for p in m.parameters()] for n, m in trainer.modules().items()}
    out = trainer.training_step(batch())
    assert set(out) == {"D_A", "D_B", "G", "G_adv", "cycle", "identity"}
    assert all(v.requires_grad is False and torch.isfinite(v) for v in out.values())
    assert torch.allclose(out["G"], out["G_adv"] + out["cycle"] + out["identity"])
    for name, module in trainer.modules().items():
        changed = any(not torch.equal(a, b) for a, b in zip(before[name], module.parameters(),
                                                             strict=True))
        assert changed, f"{name} was not updated"
    # The discriminators are trainable again after the step (frozen only for the G update).
    assert all(p.requires_grad for p in trainer.disc_a.parameters())


def test_cyclegan_pools_fill_one_image_per_step(builtins) -> None:
    torch.manual_seed(0)
    trainer = tiny("cyclegan", builtins)
    trainer.training_step(batch(0))
    trainer.training_step(batch(1))
    assert trainer.pool_a.count == 4 and trainer.pool_b.count == 4


def test_identity_weight_zero_switches_the_term_off(builtins) -> None:
    torch.manual_seed(0)
    trainer = tiny("cyclegan", builtins, losses={"identity": {"weight": 0.0}})
    assert "identity" not in trainer.training_step(batch())


def test_pix2pix_step_reports_its_terms_and_l1_weight(builtins) -> None:
    torch.manual_seed(0)
    trainer = tiny("pix2pix", builtins)
    out = trainer.training_step(batch())
    assert set(out) == {"D", "G", "G_adv", "reconstruction"}
    assert torch.allclose(out["G"], out["G_adv"] + out["reconstruction"])
    # L1 weight 100 on images in [-1, 1]: about 100 x mean |G(a) - b|, far above 1.
    assert 20 < out["reconstruction"] < 200


def test_pix2pix_extra_term_in_the_reconstruction_slot(builtins) -> None:
    torch.manual_seed(0)
    trainer = tiny("pix2pix", builtins,
                   losses={"extra": {"name": "l1", "on": "reconstruction", "weight": 1.0}})
    out = trainer.training_step(batch())
    assert torch.allclose(out["reconstruction"] / 100, out["extra"], rtol=1e-5)
    assert torch.allclose(out["G"], out["G_adv"] + out["reconstruction"] + out["extra"])


def test_pix2pix_discriminator_is_conditional(builtins) -> None:
    trainer = tiny("pix2pix", builtins)
    assert trainer.disc.model[0].in_channels == 6


def test_image_pool_fills_then_swaps_about_half() -> None:
    torch.manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and pool.count == 4
    fresh = torch.arange(100.0, 500.0).view(-1, 1, 1, 1, 1)
    returned = torch.cat([pool.query(image) for image in fresh])
    from_history = int((returned != fresh.view(-1, 1, 1, 1)).sum())
    assert 160 < from_history < 240  # each query returns a stored image with p = 1/2


def test_image_pool_state_round_trip() -> None:
    torch.manual_seed(0)
    pool = ImagePool(3)
    pool.query(torch.rand(2, 3, 4, 4))
    restored = ImagePool(3)
    restored.load_state_tensors("p", pool.state_tensors("p"), torch.device("cpu"))
    assert restored.count == 2 and torch.equal(restored.images[:2], pool.images[:2])


def test_pool_size_zero_passes_images_through() -> None:
    images = torch.rand(2, 3, 4, 4)
    assert ImagePool(0).query(images) is images


def test_linear_schedule_matches_the_papers_formula() -> None:
    table = ScheduleTable(n_epochs=100, n_epochs_decay=100)
    schedule = LRSchedule(table, 2e-4, [])
    # Epoch index e trains at 1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1).
    assert schedule.factor(0) == 1.0 and schedule.factor(99) == 1.0
    assert schedule.factor(100) == pytest.approx(1 - 1 / 101)  # the first decay epoch
    assert schedule.factor(199) == pytest.approx(1 / 101)      # the last epoch
    factors = [schedule.factor(e) for e in range(200)]
    assert all(a >= b for a, b in itertools.pairwise(factors))


def test_step_cosine_and_plateau_schedules() -> None:
    step = LRSchedule(ScheduleTable(policy="step", n_epochs=2, step_size=3, gamma=0.5), 1.0, [])
    assert [step.factor(e) for e in range(8)] == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    cosine = LRSchedule(ScheduleTable(policy="cosine", n_epochs=1, n_epochs_decay=4), 1.0, [])
    assert [round(cosine.factor(e), 4) for e in range(6)] == [1, 1, 0.8536, 0.5, 0.1464, 0]
    plateau = LRSchedule(ScheduleTable(policy="plateau", n_epochs=0, gamma=0.1), 1.0, [])
    for epoch in range(7):
        plateau.end_epoch(epoch, 1.0)  # no improvement after the first epoch
    assert plateau.factor(7) == pytest.approx(0.1)
    restored = LRSchedule(ScheduleTable(policy="plateau", n_epochs=0), 1.0, [])
    restored.load_state(plateau.state())
    assert restored.state() == plateau.state()


def test_schedule_sets_the_optimiser_rate() -> None:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    schedule = LRSchedule(ScheduleTable(n_epochs=1, n_epochs_decay=1), 2e-4, [optimizer])
    assert schedule.begin_epoch(1) == pytest.approx(1e-4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
