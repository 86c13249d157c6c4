"""`[init] from`: a new run starts from another run's network weights, nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from imtrans.catalogue.recipe_loader import load_recipe
from imtrans.core.device import seed_everything
from imtrans.errors import CheckpointError, RecipeError
from imtrans.runner import fit
from imtrans.runs.checkpoints.files import latest_checkpoint, load_checkpoint
from imtrans.training.build import build_training
from tests.conftest import TINY_RUN

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = ROOT / "recipes" / "cyclegan_photo2monet.toml"
PIX2PIX = ROOT / "recipes" / "pix2pix_edges2shoes.toml"
TINY = [f"{key}={value}" for key, value in TINY_RUN.items()]


def built(recipe_path: Path, *sets: str):
    seed_everything(0)
    recipe = load_recipe(recipe_path, [*TINY, *sets])
    return build_training(recipe, device=torch.device("cpu"), data=False, speed=False)


def saved(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(latest_checkpoint(run / "checkpoints")).tensors


def same(network: torch.nn.Module, tensors: dict[str, torch.Tensor], role: str) -> bool:
    return all(torch.equal(value, tensors[f"net.{role}.{key}"])
               for key, value in network.state_dict().items())


def test_every_network_by_default_and_the_optimisers_fresh(cyclegan_run: Path) -> None:
    training = built(CYCLEGAN, f"init.from={cyclegan_run}")
    tensors = saved(cyclegan_run)
    for role, network in training.networks.items():
        assert same(network, tensors, role), role
    for optimizer in training.trainer.optimizers().values():
        assert optimizer.state_dict()["state"] == {}  # no Adam moments carried over
    assert training.schedule.state() == built(CYCLEGAN).schedule.state()


def test_a_chosen_subset_and_a_role_mapping(cyclegan_run: Path) -> None:
    tensors = saved(cyclegan_run)
    training = built(CYCLEGAN, f"init.from={cyclegan_run}", 'init.networks=["gen_ab"]')
    fresh = built(CYCLEGAN)
    assert same(training.networks["gen_ab"], tensors, "gen_ab")
    for role in ("gen_ba", "disc_a", "disc_b"):  # as a fresh seeded run has them
        assert same(training.networks[role], {f"net.{role}.{k}": v for k, v in
                                              fresh.networks[role].state_dict().items()}, role)
    # A pix2pix generator of the same architecture started from CycleGAN's A -> B generator.
    training = built(PIX2PIX, f"init.from={cyclegan_run}", "generator.name=resnet_9blocks",
                     "generator.norm=instance", "generator.dropout=false",
                     "data.load_size=36", "data.crop_size=32", "init.networks={gen='gen_ab'}")
    assert same(training.networks["gen"], {f"net.gen.{k[len('net.gen_ab.'):]}": v
                                           for k, v in tensors.items()
                                           if k.startswith("net.gen_ab.")}, "gen")


def test_clear_errors(cyclegan_run: Path, tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"\[init\] networks: gen_xy: this trainer's networks "
                                          r"are gen_ab, gen_ba, disc_a, disc_b"):
        built(CYCLEGAN, f"init.from={cyclegan_run}", 'init.networks=["gen_xy"]')
    with pytest.raises(CheckpointError, match=r"it has no network 'gen' \(it has disc_a, "
                                              r"disc_b, gen_ab, gen_ba\)"):
        built(PIX2PIX, f"init.from={cyclegan_run}", "generator.name=resnet_9blocks",
              "data.load_size=36", "data.crop_size=32")
    with pytest.raises(CheckpointError, match=r"gen_ab does not fit: net\.gen_ab: shape of "):
        built(CYCLEGAN, f"init.from={cyclegan_run}", "generator.ngf=8")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        built(CYCLEGAN, f"init.from={tmp_path / 'nothing'}")
    official = tmp_path / "latest_net_G.pth"
    torch.save({"model.1.weight": torch.zeros(1)}, official)
    with pytest.raises(CheckpointError, match=f"imtrans import {official}"):
        built(CYCLEGAN, f"init.from={official}")


def test_a_fine_tuned_run_trains_and_resumes_without_its_source(cyclegan_run: Path,
                                                               tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(cyclegan_run, source)
    sets = [*TINY, f"init.from={source}", f"run.output_dir={tmp_path / 'runs'}",
            "train.max_steps=2"]
    messages: list[str] = []

    class Notices:
        def __getattr__(self, name: str):
            return messages.append if name == "message" else (lambda *a, **k: None)

    result = fit(load_recipe(CYCLEGAN, sets), observer=Notices())  # type: ignore[arg-type]
    assert any(m.startswith("initialised gen_ab, gen_ba, disc_a, disc_b from ") and
               "(step 4); optimisers, schedule and step start fresh" in m for m in messages)
    assert result.step == 2
    shutil.rmtree(source)  # a resume takes the weights from its own checkpoint
    resumed = fit(load_recipe(CYCLEGAN, [*sets[:-1], "train.max_steps=3"]),
                  resume=result.checkpoint)
    assert resumed.step == 3
