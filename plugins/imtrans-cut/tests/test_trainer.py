"""The `cut` trainer, and PatchNCE in CycleGAN's objective, for a few steps on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imtrans_cut.plugin
import pytest
import torch
from safetensors.torch import load_file

import imtrans
from imtrans.catalogue.recipe_loader import recipe_from_dict

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
#: Tiny networks at 32 px: a step takes a fraction of a second on one CPU core.
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=\"cpu\"", "train.log_every=1",
        "train.sample_every=2", "train.checkpoint_every=3"]


@pytest.fixture(scope="module")
def loaded() -> imtrans.Components:
    """Built-ins plus this plugin, registered inline (works installed or not)."""
    return imtrans.load_components(autoload=False, extra_plugins=[("cut", imtrans_cut.plugin)])


def tiny(loaded: imtrans.Components, **tables: dict):
    raw = {"data": {"root": "unused"}, "generator": {"ngf": 4}, "discriminator": {"ndf": 4}}
    recipe = recipe_from_dict(raw | tables, registry=loaded)
    return imtrans.build_training(recipe, loaded, device=torch.device("cpu"), data=False).trainer


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1,
            "B": torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1}


def snapshot(trainer) -> dict[str, list[torch.Tensor]]:
    return {n: [p.detach().clone() for p in m.parameters()] for n, m in trainer.modules().items()}


def changed(before: dict, trainer) -> set[str]:
    return {n for n, m in trainer.modules().items()
            if any(not torch.equal(a, b) for a, b in zip(before[n], m.parameters(), strict=True))}


def run(tmp_path: Path, recipe: str, *overrides: str) -> Path:
    """`imtrans run` in a subprocess from ``tmp_path`` (the bundled monet2photo sample)."""
    env = {k: v for k, v in os.environ.items() if k != "IMTRANS_PLUGINS"}
    env["OMP_NUM_THREADS"] = "1"  # as conftest.py: tiny tensors, one thread
    args = [a for o in [*TINY, *overrides] for a in ("--set", o)]
    proc = subprocess.run([sys.executable, "-m", "imtrans", "run", str(RECIPES / recipe), *args],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path / "runs" / Path(recipe).stem


def test_cut_step_updates_generator_discriminator_and_head(loaded) -> None:
    torch.manual_seed(0)
    trainer = tiny(loaded, trainer={"name": "cut"})
    assert set(trainer.modules()) == {"gen", "disc", "loss_nce"}
    assert set(trainer.optimizers()) == {"gen", "disc", "loss_nce"}
    before = snapshot(trainer)
    out = trainer.training_step(batch())
    assert changed(before, trainer) == {"gen", "disc", "loss_nce"}
    assert set(out) == {"D", "G", "G_adv", "nce", "nce_x", "nce_y"}
    assert torch.allclose(out["G"], out["G_adv"] + out["nce"])
    assert torch.allclose(out["nce"], 0.5 * (out["nce_x"] + out["nce_y"]))
    assert len(trainer.sample_images(batch())) == 4  # a, G(a), b, G(b)


def test_fastcut_settings_drop_the_identity_pass_and_flip_half_the_steps(loaded) -> None:
    torch.manual_seed(0)
    trainer = tiny(loaded, trainer={"name": "cut", "nce_idt": False, "flip_equivariance": True},
                   losses={"nce": {"weight": 10.0}})
    flips = []
    original = trainer.nce_terms[0][1].forward

    def spy(*args, flipped=False):
        flips.append(flipped)
        return original(*args, flipped=flipped)

    trainer.nce_terms[0][1].forward = spy
    for step in range(8):
        out = trainer.training_step(batch(step))
    assert set(out) == {"D", "G", "G_adv", "nce"}
    assert len(flips) == 8 and 0 < sum(flips) < 8  # one NCE pass per step, some flipped
    assert len(trainer.sample_images(batch())) == 2


def test_default_gan_loss_is_the_non_saturating_one(loaded) -> None:
    trainer = tiny(loaded, trainer={"name": "cut"})
    logits = torch.randn(1, 1, 6, 6)
    expected = torch.nn.functional.softplus(-logits).mean()
    assert torch.allclose(trainer.adversarial.generator_loss(logits), expected)


def test_identity_nce_needs_equal_channel_counts(loaded) -> None:
    with pytest.raises(imtrans.RecipeError, match="nce_idt"):
        tiny(loaded, trainer={"name": "cut"}, data={"root": "x", "in_channels": 1})


def test_cyclegan_objective_takes_a_patchnce_term_whose_heads_train(loaded) -> None:
    torch.manual_seed(0)
    trainer = tiny(loaded, trainer={"name": "cyclegan"},
                   losses={"nce": {"name": "patchnce", "on": "features", "num_patches": 64}})
    assert {"loss_nce_ab", "loss_nce_ba"} <= set(trainer.modules())
    assert {"loss_nce_ab", "loss_nce_ba"} <= set(trainer.optimizers())
    before = snapshot(trainer)
    for step in range(2):
        out = trainer.training_step(batch(step))
    assert {"loss_nce_ab", "loss_nce_ba", "gen_ab", "gen_ba"} <= changed(before, trainer)
    assert torch.allclose(out["G"], out["G_adv"] + out["cycle"] + out["identity"] + out["nce"])
    assert 0 < out["nce"] < 2 * 2 * torch.log(torch.tensor(64.0))  # two directions


def test_cut_recipe_trains_from_the_recipe_and_checkpoints_the_head(tmp_path: Path) -> None:
    run_dir = run(tmp_path, "cut_photo2monet.toml", "train.max_steps=3")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for losses in (r["losses"] for r in records):
        assert losses["G"] == pytest.approx(losses["G_adv"] + losses["nce"], rel=1e-5)
        assert losses["nce"] == pytest.approx(0.5 * (losses["nce_x"] + losses["nce_y"]),
                                              rel=1e-5)
    tensors = load_file(next((run_dir / "checkpoints").glob("step_*.safetensors")))
    head = [k for k in tensors if k.startswith("net.loss_nce.")]
    assert len(head) == 20  # 5 layers x 2 linears x (weight, bias)
    assert any(k.startswith("optim.loss_nce.") for k in tensors)
    resolved = (run_dir / "recipe.toml").read_text()
    assert "nce_idt = true" in resolved and 'name = "patchnce"' in resolved


def test_fastcut_recipe_trains_with_its_settings(tmp_path: Path) -> None:
    run_dir = run(tmp_path, "fastcut_photo2monet.toml", "train.max_steps=2")
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["losses"]
    assert set(last) == {"D", "G", "G_adv", "nce"}
    assert last["G"] == pytest.approx(last["G_adv"] + last["nce"], rel=1e-5)
    resolved = (run_dir / "recipe.toml").read_text()
    assert "flip_equivariance = true" in resolved and "weight = 10.0" in resolved
