"""A table that names another component keeps the settings of its place (a loss term's weight)
and drops the old component's own arguments, saying which for a ``--set``; a component that
refuses a value is named with the recipe table it came from."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT, TINY_RUN, cli_error, registry_with_plugin
from torch import Tensor

import imtrans
from imtrans.catalogue.plugins import Components
from imtrans.catalogue.recipe_loader import load_recipe, recipe_from_dict
from imtrans.cli import cli
from imtrans.errors import RecipeError
from imtrans.losses import PairLoss

RECIPE = ROOT / "recipes" / "cyclegan_photo2monet.toml"


class HuberLoss(PairLoss):
    """A plugin's Huber loss, which checks its own argument."""

    def __init__(self, *, weight: float = 1.0, delta: float = 1.0) -> None:
        super().__init__(weight=weight)
        if not delta > 0:
            raise ValueError(f"delta must be > 0, got {delta}")
        self.delta = delta

    def distance(self, output: Tensor, target: Tensor) -> Tensor:
        return (output - target).abs()


class UnweightedLoss(PairLoss):
    """A plugin loss that takes no weight."""

    def __init__(self) -> None:
        super().__init__(weight=1.0)

    def distance(self, output: Tensor, target: Tensor) -> Tensor:
        return (output - target).abs()


class LossPlugin:
    @imtrans.hookimpl
    def register_losses(self, register):
        register("huber", HuberLoss)
        register("unweighted", UnweightedLoss)


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> Components:
    """The built-ins and the plugin above, for the library and for every command."""
    return registry_with_plugin(monkeypatch, "huber-plugin", LossPlugin())


def test_a_set_name_keeps_the_weight_of_the_slot_and_says_so(loaded: Components) -> None:
    notices: list[str] = []
    recipe = load_recipe(RECIPE, ["losses.cycle.name=huber"], registry=loaded, notices=notices)
    cycle = recipe.losses["cycle"]
    assert (cycle.name, cycle.kwargs) == ("huber", {"weight": 10.0, "delta": 1.0})
    assert notices == ["--set losses.cycle.name=huber: kept weight = 10.0"]
    # The weight given with it wins, whatever the order; nothing was kept, so nothing is said.
    notices.clear()
    recipe = load_recipe(RECIPE, ["losses.cycle.weight=3", "losses.cycle.name=huber"],
                         registry=loaded, notices=notices)
    assert recipe.losses["cycle"].kwargs["weight"] == 3.0 and notices == []


def test_a_set_name_drops_the_old_components_own_arguments_and_says_which(
        loaded: Components) -> None:
    notices: list[str] = []
    recipe = load_recipe(RECIPE, ["generator.name=unet_128", "generator.ngf=8"],
                         registry=loaded, notices=notices)
    # CycleGAN's instance norm and no dropout belong to its resnet_9blocks: unet's own defaults.
    assert recipe.generator.kwargs["norm"] == "batch" and recipe.generator.kwargs["dropout"]
    assert recipe.generator.kwargs["ngf"] == 8
    assert notices == ['--set generator.name=unet_128: dropped the arguments of resnet_9blocks: '
                       'norm = "instance", dropout = false']
    # resnet_6blocks takes instance norm and no dropout by default: nothing changes, unsaid.
    notices.clear()
    recipe = load_recipe(RECIPE, ["generator.name=resnet_6blocks"], registry=loaded,
                         notices=notices)
    assert recipe.generator.kwargs["norm"] == "instance" and notices == []
    # A loss that takes no weight gets none, and the weight is said to be dropped.
    notices.clear()
    recipe = load_recipe(RECIPE, ["losses.cycle.name=unweighted"], registry=loaded,
                         notices=notices)
    assert recipe.losses["cycle"].kwargs == {}
    assert notices == ["--set losses.cycle.name=unweighted: dropped the arguments of cycle: "
                       "weight = 10.0"]


def test_a_recipe_file_naming_another_loss_keeps_the_weight(loaded: Components) -> None:
    raw = tomllib.loads((ROOT / "recipes" / "pix2pix_facades.toml").read_text())
    raw["losses"] = {"reconstruction": {"name": "huber"}}
    recipe = recipe_from_dict(raw, registry=loaded)
    assert recipe.losses["reconstruction"].kwargs["weight"] == 100.0  # pix2pix's lambda_L1
    raw["losses"]["reconstruction"]["weight"] = 5.0  # the file's own weight wins
    assert recipe_from_dict(raw, registry=loaded).losses["reconstruction"].kwargs["weight"] == 5
    # The arguments of the default's component stay behind (pix2pix's unet_256 norm "batch").
    raw["generator"] = {"name": "resnet_6blocks"}
    assert recipe_from_dict(raw, registry=loaded).generator.kwargs["norm"] == "instance"


def test_the_library_keeps_the_weight_too(tmp_path: Path, loaded: Components) -> None:
    sets = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in TINY_RUN.items()]
    sets += ["train.max_steps=1", f"run.output_dir='{tmp_path}'"]
    recipe = load_recipe(RECIPE, sets, registry=loaded)
    # train() with overrides of a loaded recipe: they apply to its resolved tables.
    result = imtrans.train(recipe, ["losses.cycle.name=huber", "losses.cycle.delta=0.5"],
                           registry=loaded)
    written = tomllib.loads((result.run_dir / "recipe.toml").read_text())
    assert written["losses"]["cycle"]["name"] == "huber"
    assert written["losses"]["cycle"]["weight"] == 10.0
    assert written["losses"]["cycle"]["delta"] == 0.5


def test_validate_says_what_a_set_name_kept_and_prints_it(loaded: Components) -> None:
    result = CliRunner().invoke(cli, ["validate", str(RECIPE), "--set", "losses.cycle.name=huber",
                                      "--print"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "note: --set losses.cycle.name=huber: kept weight = 10.0" in lines
    row = next(line for line in lines if line.startswith("losses.cycle "))
    assert row.split()[1] == "huber" and "weight 10" in row
    printed = result.output[result.output.index("[run]"):result.output.rindex("recipe ")]
    assert tomllib.loads(printed)["losses"]["cycle"] == {"name": "huber", "weight": 10.0,
                                                         "delta": 1.0}


@pytest.mark.parametrize("override, line", [
    ("losses.cycle.delta=-1", "error: [losses.cycle] huber: delta must be > 0, got -1.0"),
    ("losses.cycle.weight=-1", "error: [losses.cycle] huber: weight must be a finite number "
                               ">= 0, got -1.0"),
])
def test_a_component_refusing_a_value_is_named_with_its_table(
        override: str, line: str, loaded: Components) -> None:
    result = CliRunner().invoke(cli, ["validate", str(RECIPE), "--set",
                                      "losses.cycle.name=huber", "--set", override])
    assert cli_error(result) == line


def test_a_built_in_component_refusing_a_value_is_named_with_its_table(
        loaded: Components) -> None:
    result = CliRunner().invoke(cli, ["validate", str(RECIPE), "--set", "generator.ngf=0"])
    assert cli_error(result) == ("error: [generator] resnet_9blocks: ngf must be an integer "
                                 ">= 1; got 0")


def test_run_names_the_table_too(tmp_path: Path, loaded: Components) -> None:
    from imtrans.training.build import build_training

    recipe = load_recipe(RECIPE, ["losses.cycle.name=huber", "losses.cycle.delta=0"],
                         registry=loaded)
    with pytest.raises(RecipeError, match=r"^\[losses\.cycle\] huber: delta must be > 0, "):
        build_training(recipe, loaded, device=torch.device("cpu"), data=False)


def test_a_refused_recipe_says_what_a_set_name_dropped(loaded: Components) -> None:
    with pytest.raises(RecipeError) as refused:
        load_recipe(RECIPE, ["data.name=aligned"], registry=loaded)
    assert str(refused.value).endswith(
        "[data]: missing required argument 'root' (after --set data.name=aligned: kept catalog "
        '= "monet2photo"; dropped the arguments of unaligned: root = "datasets/monet2photo", '
        'direction = "BtoA")')


def test_run_says_what_a_set_name_kept_and_logs_it(tmp_path: Path, loaded: Components) -> None:
    sets = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in TINY_RUN.items()]
    sets += ["train.max_steps=1", f"run.output_dir='{tmp_path}'", "run.name='swap'",
             "losses.cycle.name=huber"]
    result = CliRunner().invoke(cli, ["run", str(RECIPE), *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    note = "note: --set losses.cycle.name=huber: kept weight = 10.0"
    assert note in result.output.splitlines()
    assert note in (tmp_path / "swap" / "train.log").read_text()
    written = tomllib.loads((tmp_path / "swap" / "recipe.toml").read_text())
    assert written["losses"]["cycle"]["weight"] == 10.0
