"""CycleGAN's per-direction weights (``[trainer] weight_a``, ``weight_b``): the default step is
unchanged, and the official code's ``lambda_A``, ``lambda_B``, ``lambda_identity`` come out."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from imtrans.catalogue.plugins import Components, load_components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.errors import InvalidArgumentError, RecipeError
from imtrans.trainers import CycleGANTrainer
from imtrans.training.build import build_training


@pytest.fixture(scope="module")
def builtins() -> Components:
    return load_components(autoload=False)


def tiny(builtins: Components, trainer: dict[str, Any] | None = None,
         losses: dict[str, Any] | None = None) -> CycleGANTrainer:
    """A CycleGAN with 4-channel networks on the CPU, built from seed 0."""
    raw: dict[str, Any] = {"trainer": {"name": "cyclegan"} | (trainer or {}),
                           "data": {"root": "unused"},
                           "generator": {"ngf": 4}, "discriminator": {"ndf": 4}}
    if losses:
        raw["losses"] = losses
    recipe = recipe_from_dict(raw, registry=builtins)
    torch.manual_seed(0)
    built = build_training(recipe, builtins, device=torch.device("cpu"), data=False,
                           speed=False).trainer
    assert isinstance(built, CycleGANTrainer)
    return built


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"A": torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1,
            "B": torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1}


def step(trainer: CycleGANTrainer) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)  # the pools draw from torch's generator
    return trainer.training_step(batch())


@torch.no_grad()
def official_terms(trainer: CycleGANTrainer, lambda_a: float, lambda_b: float,
                   lambda_identity: float) -> dict[str, torch.Tensor]:
    """The four terms as cycle_gan_model.py of the official code writes them (G_A = gen_ab,
    G_B = gen_ba), from the trainer's networks as they are before its step."""
    real_a, real_b = batch()["A"], batch()["B"]
    g_a, g_b = trainer.gen_ab, trainer.gen_ba
    fake_b, fake_a = g_a(real_a), g_b(real_b)
    return {
        "cycle_A": F.l1_loss(g_b(fake_b), real_a) * lambda_a,
        "cycle_B": F.l1_loss(g_a(fake_a), real_b) * lambda_b,
        "idt_A": F.l1_loss(g_a(real_b), real_b) * lambda_b * lambda_identity,
        "idt_B": F.l1_loss(g_b(real_a), real_a) * lambda_a * lambda_identity,
    }


def test_factors_of_one_give_the_same_step_bit_for_bit(builtins: Components) -> None:
    plain, ones = tiny(builtins), tiny(builtins, {"weight_a": 1.0, "weight_b": 1.0})
    got_plain, got_ones = step(plain), step(ones)
    assert got_plain.keys() == got_ones.keys()
    for key in got_plain:
        assert torch.equal(got_plain[key], got_ones[key]), key
    for name, module in plain.modules().items():
        for a, b in zip(module.parameters(), ones.modules()[name].parameters(), strict=True):
            assert torch.equal(a, b), name


def test_factors_of_one_keep_todays_terms(builtins: Components) -> None:
    # Today's objective: cycle weight 10 and identity weight 5 on both directions alike.
    trainer = tiny(builtins)
    want = official_terms(trainer, 10.0, 10.0, 0.5)
    out = step(trainer)
    assert torch.allclose(out["cycle"], want["cycle_A"] + want["cycle_B"], rtol=1e-6, atol=0)
    assert torch.allclose(out["identity"], want["idt_A"] + want["idt_B"], rtol=1e-6, atol=0)


def test_official_lambdas_give_the_official_terms(builtins: Components) -> None:
    # lambda_A=10, lambda_B=5, lambda_identity=0.5: cycle weight lambda_A, identity weight
    # lambda_A * lambda_identity, and B's factor lambda_B / lambda_A.
    trainer = tiny(builtins, {"weight_b": 0.5},
                   {"cycle": {"weight": 10.0}, "identity": {"weight": 5.0}})
    want = official_terms(trainer, 10.0, 5.0, 0.5)
    out = step(trainer)
    assert torch.allclose(out["cycle"], want["cycle_A"] + want["cycle_B"], rtol=1e-6, atol=0)
    assert torch.allclose(out["identity"], want["idt_A"] + want["idt_B"], rtol=1e-6, atol=0)
    assert torch.allclose(out["G"], out["G_adv"] + out["cycle"] + out["identity"], rtol=1e-6)


def test_each_factor_weighs_the_terms_against_its_own_domain(builtins: Components) -> None:
    # weight_a = 0 leaves the parts against B only: A's reconstruction and G_BA(a) vs a drop.
    trainer = tiny(builtins, {"weight_a": 0.0, "weight_b": 2.0})
    want = official_terms(trainer, 10.0, 10.0, 0.5)
    out = step(trainer)
    assert torch.allclose(out["cycle"], 2 * want["cycle_B"], rtol=1e-6, atol=0)
    assert torch.allclose(out["identity"], 2 * want["idt_A"], rtol=1e-6, atol=0)


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, True, "10"])
@pytest.mark.parametrize("name", ["weight_a", "weight_b"])
def test_bad_factors_are_refused(name: str, value: Any) -> None:
    with pytest.raises(InvalidArgumentError, match=name):
        CycleGANTrainer(**{name: value})


def test_a_bad_factor_in_a_recipe_names_the_table(builtins: Components) -> None:
    with pytest.raises(RecipeError, match=r"\[trainer\]: weight_b must be a finite number >= 0"):
        tiny(builtins, {"weight_b": -0.5})


def test_a_checkpoint_from_before_the_weights_existed_still_resumes(cyclegan_run, tmp_path):
    from imtrans.catalogue.recipe_loader import recipe_from_dict
    from imtrans.runs.checkpoints.files import latest_checkpoint, load_checkpoint, save_checkpoint
    from imtrans.training import checkpointing as training_checkpoint
    from imtrans.training.build import build_training

    old = load_checkpoint(latest_checkpoint(cyclegan_run / "checkpoints"))
    manifest = dict(old.manifest)
    saved_trainer = {k: v for k, v in manifest["recipe"]["trainer"].items()
                     if k not in ("weight_a", "weight_b")}
    manifest["recipe"] = {**manifest["recipe"], "trainer": saved_trainer}
    path = save_checkpoint(tmp_path / "step_00000004.safetensors", old.tensors, manifest)
    recipe = recipe_from_dict(old.manifest["recipe"])
    training = build_training(recipe, device=torch.device("cpu"), data=False, speed=False)
    assert training_checkpoint.restore(path, training.trainer, training.schedule, recipe,
                                       torch.device("cpu")) == 4
