"""Recipes: strict loading, trainer defaults, overrides, errors with TOML paths."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from imtrans.catalogue.plugins import Components, load_components
from imtrans.catalogue.recipe_loader import load_recipe, parse_override, recipe_from_dict
from imtrans.core.tomlwriter import dumps
from imtrans.errors import RecipeError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "recipes").glob("*.toml"))


@pytest.fixture(scope="module")
def builtins() -> Components:
    return load_components(autoload=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


CYCLEGAN = """
[trainer]
name = "cyclegan"
[data]
root = "somewhere"
"""


def test_every_shipped_recipe_loads(builtins: Components) -> None:
    assert {p.name for p in SHIPPED} >= {"cyclegan_photo2monet.toml", "pix2pix_edges2shoes.toml"}
    for path in SHIPPED:
        recipe = load_recipe(path, registry=builtins)
        assert recipe.run.name == path.stem


def test_cyclegan_recipe_gets_the_published_defaults(builtins: Components) -> None:
    recipe = load_recipe(ROOT / "recipes/cyclegan_photo2monet.toml", registry=builtins)
    assert recipe.generator.name == "resnet_9blocks"
    assert recipe.generator.kwargs == {
        "norm": "instance", "dropout": False, "ngf": 64, "padding": "reflect",
        "upsampling": "transposed", "init": "normal", "init_gain": 0.02}
    assert recipe.trainer.kwargs == {"pool_size": 50, "d_loss_scale": 0.5, "weight_a": 1.0,
                                     "weight_b": 1.0}
    assert (recipe.discriminator.name, recipe.discriminator.kwargs["norm"]) == ("patchgan",
                                                                               "instance")
    assert {k: (t.name, t.kwargs.get("weight")) for k, t in recipe.losses.items()} == {
        "adversarial": ("lsgan", 1.0), "cycle": ("cycle", 10.0), "identity": ("identity", 5.0)}
    assert (recipe.optim.lr, recipe.optim.betas) == (2e-4, (0.5, 0.999))
    assert (recipe.schedule.n_epochs, recipe.schedule.n_epochs_decay) == (100, 100)
    assert recipe.data.batch_size == 1 and recipe.data.kwargs["direction"] == "BtoA"


def test_pix2pix_recipe_gets_the_published_defaults(builtins: Components) -> None:
    recipe = load_recipe(ROOT / "recipes/pix2pix_edges2shoes.toml", registry=builtins)
    assert recipe.generator.name == "unet_256"
    assert recipe.generator.kwargs.items() >= {"norm": "batch", "dropout": True}.items()
    assert "in_channels" not in recipe.generator.kwargs  # set by the trainer from [data]
    assert recipe.losses["adversarial"].name == "gan"
    assert recipe.losses["reconstruction"].kwargs == {"weight": 100.0, "reduction": "mean"}


def test_unknown_key_fails_with_its_path(tmp_path: Path, builtins: Components) -> None:
    path = write(tmp_path, CYCLEGAN + "[optim]\nlrr = 0.1\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=builtins)
    assert str(info.value) == (f"{path}: optim.lrr: unknown key (value 0.1); did you mean 'lr'? "
                               "known: lr, betas, weight_decay")
    path = write(tmp_path, CYCLEGAN + "[genrator]\nngf = 32\n")
    with pytest.raises(RecipeError, match=r"genrator: unknown key .* did you mean 'generator'"):
        load_recipe(path, registry=builtins)


def test_bad_value_fails_with_path_and_value(tmp_path: Path, builtins: Components) -> None:
    path = write(tmp_path, CYCLEGAN + "[optim]\nlr = -1.0\n")
    with pytest.raises(RecipeError, match=r"optim.lr = -1.0: Input should be greater than 0"):
        load_recipe(path, registry=builtins)


def test_misspelled_component_gets_a_suggestion(tmp_path: Path, builtins: Components) -> None:
    path = write(tmp_path, CYCLEGAN + '[generator]\nname = "resnet_9block"\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=builtins)
    message = str(info.value)
    assert message.startswith(f"{path}: [generator] name = 'resnet_9block': unknown generator")
    assert "did you mean 'resnet_9blocks'?" in message


def test_misspelled_argument_names_the_table(tmp_path: Path, builtins: Components) -> None:
    path = write(tmp_path, CYCLEGAN + "[losses.cycle]\nwieght = 10\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=builtins)
    assert str(info.value) == (
        f"{path}: [losses.cycle]: unexpected argument 'wieght' (did you mean 'weight'?); "
        "accepted: weight, reduction")


def test_wrong_argument_type_names_table_and_value(tmp_path: Path, builtins: Components) -> None:
    path = write(tmp_path, CYCLEGAN + '[generator]\nngf = "sixty"\n')
    with pytest.raises(RecipeError, match=r"\[generator\]: ngf = 'sixty' is invalid"):
        load_recipe(path, registry=builtins)


def test_unknown_trainer_and_missing_trainer(tmp_path: Path, builtins: Components) -> None:
    with pytest.raises(RecipeError, match="did you mean 'cyclegan'"):
        load_recipe(write(tmp_path, '[trainer]\nname = "cyclegn"\n'), registry=builtins)
    with pytest.raises(RecipeError, match=r"\[trainer\] name is required"):
        load_recipe(write(tmp_path, "[data]\nroot = 'x'\n"), registry=builtins)


def test_syntax_error_and_missing_file(tmp_path: Path, builtins: Components) -> None:
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(write(tmp_path, "[trainer\n"), registry=builtins)
    with pytest.raises(RecipeError, match="recipe not found"):
        load_recipe(tmp_path / "nope.toml", registry=builtins)


def test_overrides_are_applied_and_typed(tmp_path: Path, builtins: Components) -> None:
    recipe = load_recipe(write(tmp_path, CYCLEGAN), [
        "optim.lr=1e-4", "losses.cycle.weight=5", "generator.name=resnet_6blocks",
        "data.batch_size=4", "optim.betas=[0.0, 0.99]"], registry=builtins)
    assert recipe.optim.lr == 1e-4 and recipe.optim.betas == (0.0, 0.99)
    assert recipe.losses["cycle"].kwargs["weight"] == 5
    assert recipe.generator.name == "resnet_6blocks"
    # Naming a different component drops the default's arguments instead of mixing them in:
    # the written-out arguments are resnet_6blocks' own defaults (dropout False, ngf 64...).
    assert recipe.generator.kwargs["ngf"] == 64
    assert recipe.data.batch_size == 4


def test_override_errors() -> None:
    with pytest.raises(RecipeError, match=r"expects section\.key=value"):
        parse_override("optim.lr")
    with pytest.raises(RecipeError, match=r"expects section\.key=value"):
        parse_override("optim..lr=1")
    assert parse_override("run.name=my run") == ("run.name", "my run")
    assert parse_override("data.flip=false") == ("data.flip", False)


def test_override_into_a_value_is_refused(tmp_path: Path, builtins: Components) -> None:
    with pytest.raises(RecipeError, match=r"optim\.lr is a value, not a table"):
        load_recipe(write(tmp_path, CYCLEGAN + "[optim]\nlr = 1e-4\n"), ["optim.lr.x=1"],
                    registry=builtins)


def test_unknown_loss_slot_is_refused(builtins: Components) -> None:
    raw = tomllib.loads(CYCLEGAN + '[losses.extra]\nname = "l1"\n')
    with pytest.raises(RecipeError, match="has no loss slot 'extra'; slots: adversarial, cycle"):
        recipe_from_dict(raw, registry=builtins)
    raw["losses"]["extra"]["on"] = "cycle"
    assert recipe_from_dict(raw, registry=builtins).losses["extra"].on == "cycle"


def test_channel_counts_come_from_data_only(builtins: Components) -> None:
    raw = tomllib.loads(CYCLEGAN + "[generator]\nin_channels = 1\n")
    with pytest.raises(RecipeError, match=r"\[generator\] in_channels: set by trainer"):
        recipe_from_dict(raw, registry=builtins)


def test_resolved_recipe_round_trips_through_toml(builtins: Components) -> None:
    recipe = load_recipe(ROOT / "recipes/cyclegan_photo2monet.toml", registry=builtins)
    text = dumps(recipe.resolved())
    again = recipe_from_dict(tomllib.loads(text), registry=builtins)
    assert again == recipe
    assert "[losses.cycle]" in text and "weight = 10.0" in text
