"""Loading a recipe reads, checks names and arguments, and fills defaults; it builds nothing.
Whether the recipe can run here (device, sizes, memory) is the build's check, and a run
builds its trainer once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import imtrans
from imtrans.catalogue.recipe_loader import load_recipe
from imtrans.errors import RecipeError
from imtrans.trainers.cyclegan import CycleGANTrainer
from imtrans.training.build import build_training

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "cyclegan_photo2monet.toml"
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu", "train.max_steps=1", "train.sample_every=100",
        "data.max_items=2", "trainer.pool_size=0"]


pytestmark = pytest.mark.usefixtures("builtins_only")  # whatever plugins are installed too


@pytest.fixture
def built_modules(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The class names of every torch module constructed while the test runs."""
    built: list[str] = []
    original = torch.nn.Module.__init__

    def counting(self: torch.nn.Module, *args: object, **kwargs: object) -> None:
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__init__", counting)
    return built


@pytest.fixture
def trainers_built(monkeypatch: pytest.MonkeyPatch) -> list[CycleGANTrainer]:
    """Every CycleGAN trainer constructed while the test runs."""
    built: list[CycleGANTrainer] = []
    original = CycleGANTrainer.__init__

    def counting(self: CycleGANTrainer, *args: object, **kwargs: object) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(CycleGANTrainer, "__init__", counting)
    return built


def test_loading_builds_no_network(built_modules: list[str]) -> None:
    recipe = load_recipe(RECIPE, TINY)
    assert recipe.generator.kwargs["ngf"] == 4
    assert built_modules == []


def test_loading_imports_no_training_module() -> None:
    code = ("import sys\nfrom imtrans.catalogue.recipe_loader import load_recipe\n"
            f"load_recipe({str(RECIPE)!r})\n"
            "print(' '.join(m for m in sys.modules if m.startswith('imtrans.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout.split()
    assert "imtrans.catalogue.recipe_loader" in loaded
    # The registries hold the component classes (imtrans.nn, imtrans.losses), so checking
    # names and arguments imports them; the feasibility build lives in training, not loaded.
    assert [m for m in loaded if m.startswith("imtrans.training")] == []


def test_a_recipe_too_big_for_the_machine_loads_and_the_build_refuses_it(
        built_modules: list[str]) -> None:
    recipe = load_recipe(RECIPE, [*TINY, "generator.ngf=1000000"])  # loading does not judge it
    assert built_modules == []
    with pytest.raises(RecipeError, match=r"cannot fit in the memory of cpu.*generator\.ngf"):
        build_training(recipe, device=torch.device("cpu"), data=False)
    # Refused on the meta device before anything was built for real on the CPU.
    assert built_modules and all(name != "Parameter" for name in built_modules)


def test_the_build_refuses_before_reading_any_data(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPE, [*TINY, "discriminator.n_layers=100",
                                  f"data.root={tmp_path / 'nothing here'}"])
    # The data folder does not exist: the refusal names the network, not the data.
    with pytest.raises(RecipeError, match=r"discriminator\.n_layers = 100"):
        build_training(recipe, device=torch.device("cpu"))


def test_a_run_builds_its_trainer_once(trainers_built: list[CycleGANTrainer],
                                       tmp_path: Path) -> None:
    recipe = load_recipe(RECIPE, [*TINY, f"run.output_dir={tmp_path}"])
    # Loading asks the trainer's class which networks it lays out for the data's channels
    # (an object with its hyperparameters alone): the one trainer loading makes.
    assert len(trainers_built) == 1
    result = imtrans.train(recipe)
    assert result.step == 1
    # The run's build made one more, and its feasibility check used that same one.
    assert len(trainers_built) == 2
