"""`imtrans import`: official pix2pix / CycleGAN checkpoints become imtrans runs.

The official files are made here with the official layout: imtrans's networks have the
official state-dict keys, so ``torch.save(network.state_dict())`` writes what the official
``save_networks`` writes (for ``norm none`` the official networks lack some conv biases; those
files are made by dropping them). The tests then check that ``translate`` on the imported run
gives the network's own forward pass, that roles map as the official code names them, that a
code-running pickle is refused and runs nothing, and that every command handed a ``.pth``
says how to import it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from imtrans.cli import cli
from imtrans.errors import CheckpointError
from imtrans.inference.translator import to_uint8
from imtrans.nn import generators
from imtrans.nn.discriminators.patchgan import patchgan
from imtrans.runs.checkpoints.files import list_checkpoints, load_checkpoint
from imtrans.zoo.importer import import_official
from imtrans.zoo.options import read_train_opt
from tests.test_untrusted import Payload, cli_error

ROOT = Path(__file__).resolve().parents[1]

TRAIN_OPT = """----------------- Options ---------------
               batch_size: 1
                    beta1: 0.5
                 dataroot: ./datasets/horse2zebra        \t[default: None]
                direction: AtoB
                 gan_mode: lsgan
                  gpu_ids: 0
                 lambda_A: 10.0
                 lambda_B: 10.0
          lambda_identity: 0.5
                    model: cycle_gan
                     name: horse2zebra                   \t[default: experiment_name]
                      ndf: 4                             \t[default: 64]
                     netD: basic
                     netG: resnet_6blocks                \t[default: resnet_9blocks]
                      ngf: 4                             \t[default: 64]
               no_dropout: True                          \t[default: False]
                     norm: instance
                pool_size: 50
----------------- End -------------------
"""


def seeded(build: nn.Module, seed: int) -> nn.Module:
    """Random weights (and batch-norm statistics), so that equal outputs mean equal weights."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for tensor in build.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.2 + (1 if tensor.dim() == 1 else 0))
    return build.eval()


def official_folder(folder: Path, networks: dict[str, nn.Module]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, network in networks.items():
        torch.save(network.state_dict(), folder / f"latest_net_{name}.pth")
    return folder


def write_images(folder: Path, count: int = 2, size: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index}.png")
    return folder


def expected_output(network: nn.Module, image: Path) -> np.ndarray:
    """What the network itself makes of ``image``: the pixels translate must write."""
    pixels = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32)
    tensor = torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None] / 127.5 - 1
    with torch.no_grad():
        out = network.eval()(tensor)[0]
    return to_uint8(out).permute(1, 2, 0).numpy()


def translate(run: Path, images: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(cli, ["translate", str(run), str(images), str(out),
                                      "--device", "cpu", "--workers", "0", "--mode", "eval",
                                      *extra])
    assert result.exit_code == 0, result.output


def assert_translates_as(network: nn.Module, run: Path, tmp_path: Path, *extra: str,
                         size: int = 32) -> None:
    images = write_images(tmp_path / f"in{size}", size=size)
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    translate(run, images, out, *extra)
    for image in sorted(images.iterdir()):
        assert_same_pixels(np.asarray(Image.open(out / image.name)),
                           expected_output(network, image))


def assert_same_pixels(got: np.ndarray, want: np.ndarray) -> None:
    """Equal up to rounding: translate runs a batch, the reference one image, and convolution
    sums in another order can move a value across a rounding boundary (1 level of 255)."""
    difference = np.abs(got.astype(int) - want.astype(int))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99, difference.max()


def test_train_opt_is_read_as_the_official_code_writes_it(tmp_path: Path) -> None:
    (tmp_path / "train_opt.txt").write_text(TRAIN_OPT)
    options = read_train_opt(tmp_path / "train_opt.txt")
    assert options["netG"] == "resnet_6blocks" and options["ngf"] == "4"
    assert options["name"] == "horse2zebra" and options["dataroot"] == "./datasets/horse2zebra"
    assert options["no_dropout"] == "True" and "Options" not in "".join(options)


def test_a_cyclegan_folder_maps_roles_as_the_official_code_names_them(tmp_path: Path) -> None:
    nets = {"G_A": seeded(generators.resnet_6blocks(ngf=4), 1),
            "G_B": seeded(generators.resnet_6blocks(ngf=4), 2),
            "D_A": seeded(patchgan(ndf=4), 3), "D_B": seeded(patchgan(ndf=4), 4)}
    source = official_folder(tmp_path / "checkpoints" / "horse2zebra", nets)
    (source / "train_opt.txt").write_text(TRAIN_OPT)
    result = CliRunner().invoke(cli, ["import", str(source), str(tmp_path / "runs" / "h2z")])
    assert result.exit_code == 0, result.output
    assert "gen_ab  <- latest_net_G_A.pth: strict load passed" in result.output
    assert f"options from {source / 'train_opt.txt'}" in result.output
    run = tmp_path / "runs" / "h2z"
    (step, path), = list_checkpoints(run / "checkpoints")
    checkpoint = load_checkpoint(path)
    # D_A judges domain B (G_A's outputs): it is imtrans's disc_b; D_B is disc_a.
    for official, role in {"G_A": "gen_ab", "G_B": "gen_ba", "D_A": "disc_b",
                           "D_B": "disc_a"}.items():
        for key, tensor in nets[official].state_dict().items():
            assert torch.equal(checkpoint.tensors[f"net.{role}.{key}"], tensor), (role, key)
    recipe = checkpoint.manifest["recipe"]
    assert recipe["generator"]["name"] == "resnet_6blocks" and recipe["generator"]["ngf"] == 4
    assert recipe["losses"]["cycle"]["weight"] == 10.0
    assert recipe["losses"]["identity"]["weight"] == 5.0
    assert recipe["data"]["root"] == "./datasets/horse2zebra"
    imported = checkpoint.manifest["imported"]
    assert step == 0 and imported["optimizer_state"] == "fresh"
    assert imported["fresh_networks"] == [] and imported["options"]["netG"] == "resnet_6blocks"
    assert set(imported["files"]) == {"gen_ab", "gen_ba", "disc_a", "disc_b"}
    # Adam's moments are those of a new optimiser: nothing was taken from anywhere.
    assert not [k for k in checkpoint.tensors if k.startswith("optim.") and "exp_avg" in k]
    assert_translates_as(nets["G_A"], run, tmp_path)
    assert_translates_as(nets["G_B"], run, tmp_path, "--direction", "BtoA")


def test_a_pix2pix_folder_and_a_lone_generator_file(tmp_path: Path) -> None:
    gen = seeded(generators.unet_128(ngf=4), 5)  # batch norm: statistics travel too
    disc = seeded(patchgan(in_channels=6, ndf=4, norm="batch"), 6)
    source = official_folder(tmp_path / "facades_label2photo", {"G": gen, "D": disc})
    imported = import_official(source, tmp_path / "runs" / "facades")
    assert imported.trainer == "pix2pix" and imported.fresh == []
    assert imported.recipe.generator.name == "unet_128"  # read off the tensors: no options
    assert imported.recipe.discriminator.kwargs["ndf"] == 4
    assert_translates_as(gen, imported.run_dir, tmp_path, size=128)
    # One file, as the official pretrained models come: a U-Net is pix2pix's generator.
    lone = tmp_path / "edges2shoes.pth"
    torch.save(gen.state_dict(), lone)
    imported = import_official(lone, tmp_path / "runs" / "edges2shoes")
    assert imported.trainer == "pix2pix" and imported.fresh == ["disc"]
    assert list(imported.roles) == ["gen"]
    assert_translates_as(gen, imported.run_dir, tmp_path, size=128)


def _official_none(network: nn.Module, last_conv: str) -> tuple[nn.Module, dict]:
    """The official ``norm none`` network: no bias in the convs a norm would follow (all but
    the last). Returns the equivalent imtrans network (those biases zero) and the file's
    state dict (those biases left out)."""
    state = {}
    with torch.no_grad():
        for name, module in network.named_modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d) and name != last_conv:
                module.bias.zero_()
    for key, tensor in network.state_dict().items():
        owner = key.removesuffix(".bias")
        if key.endswith(".bias") and owner != last_conv:
            continue
        state[key] = tensor
    return network, state


@pytest.mark.parametrize(("build", "last_conv", "dropped"), [
    (lambda: generators.resnet_9blocks(ngf=4, norm="none"), "model.26", 23),
    (lambda: generators.unet_256(ngf=4, norm="none", dropout=False), "model.model.3", 15),
])
def test_norm_none_files_load_with_zero_biases_and_translate_the_same(
        tmp_path: Path, build, last_conv: str, dropped: int) -> None:
    network, state = _official_none(seeded(build(), 7), last_conv)
    missing = set(network.state_dict()) - set(state)
    assert len(missing) == dropped  # the biases the official use_bias test leaves out
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    model = "pix2pix" if last_conv.startswith("model.model") else "test"
    imported = import_official(path, tmp_path / "run",
                               options={"norm": "none", "no_dropout": "True", "model": model})
    assert imported.zero_biases[next(iter(imported.roles))] == dropped
    size = 256 if model == "pix2pix" else 32
    images = write_images(tmp_path / "in", count=1, size=size)
    translate(imported.run_dir, images, tmp_path / "out")
    assert_same_pixels(np.asarray(Image.open(tmp_path / "out" / "img0.png")),
                       expected_output(network, images / "img0.png"))


def test_legacy_files_and_old_instance_norm_statistics(tmp_path: Path) -> None:
    # PyTorch before 0.4 wrote running statistics for instance norm; the official loader
    # drops them, and so does the import. Old files are also in the pre-zip format.
    gen = seeded(generators.resnet_6blocks(ngf=4), 8)
    state = dict(gen.state_dict())
    state["model.2.running_mean"] = torch.zeros(4)
    state["model.2.running_var"] = torch.ones(4)
    path = tmp_path / "old.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:2] == b"\x80\x02"
    imported = import_official(path, tmp_path / "run")
    assert imported.trainer == "cyclegan" and imported.roles == {"gen_ab": path}
    # The inverse generator was never trained: translating with it is refused.
    # (An input image: translate checks its inputs before it loads the checkpoint.)
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    Image.new("RGB", (8, 8)).save(image)
    result = CliRunner().invoke(cli, ["translate", str(imported.run_dir), str(image.parent),
                                      str(tmp_path / "x"), "--direction", "BtoA"])
    assert result.exit_code == 1 and "imported without a BtoA generator" in result.output
    manifest = load_checkpoint(imported.checkpoint).manifest
    assert manifest["imported"]["dropped_instance_norm_statistics"] == 2
    assert_translates_as(gen, imported.run_dir, tmp_path)


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    armed, marker = tmp_path / "armed", tmp_path / "marker"
    torch.save({"model.1.weight": torch.zeros(1), "x": Payload(armed)}, tmp_path / "armed.pth")
    torch.load(tmp_path / "armed.pth", weights_only=False)
    assert armed.exists()  # the payload works: a full unpickle runs it
    path = tmp_path / "latest_net_G.pth"
    torch.save({"model.1.weight": torch.zeros(1), "x": Payload(marker)}, path)
    line = cli_error(CliRunner().invoke(cli, ["import", str(path), str(tmp_path / "run")]))
    assert "was refused" in line and "weights_only" in line and "nothing in it ran" in line
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_a_wrong_architecture_is_one_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G.pth"
    torch.save(generators.resnet_6blocks(ngf=4).state_dict(), path)
    (tmp_path / "run").mkdir()
    line = cli_error(CliRunner().invoke(cli, ["import", str(path), str(tmp_path / "run"),
                                              "--netG", "resnet_9blocks"]))
    assert "does not fit the generator" in line and "resnet_9blocks" in line
    assert "missing from the checkpoint" in line
    assert list((tmp_path / "run").iterdir()) == []
    # An existing run is never written over.
    import_official(path, tmp_path / "run")
    with pytest.raises(CheckpointError, match="already holds a run"):
        import_official(path, tmp_path / "run")


def test_every_command_handed_a_pth_says_how_to_import_it(tmp_path: Path) -> None:
    path = tmp_path / "horse2zebra_pretrained" / "latest_net_G.pth"
    path.parent.mkdir()
    torch.save(generators.resnet_6blocks(ngf=4).state_dict(), path)
    images = write_images(tmp_path / "in", count=1)
    runner = CliRunner()
    recipe = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
    commands = {
        "translate": ["translate", str(path), str(images), str(tmp_path / "out")],
        "eval": ["eval", str(path), "--data", str(images)],
        "export": ["export", str(path), "--format", "onnx", "-o", str(tmp_path / "g.onnx")],
        "run --resume": ["run", recipe, "--resume", str(path), "--set",
                         f"run.output_dir={tmp_path / 'runs'}"],
    }
    for name, args in commands.items():
        line = cli_error(runner.invoke(cli, args))
        assert "is a PyTorch pickle (torch.save)" in line, (name, line)
        assert f"imtrans import {path} runs/horse2zebra" in line, (name, line)
    scripted = tmp_path / "g.pt"
    torch.jit.save(torch.jit.trace(generators.resnet_6blocks(ngf=4), torch.zeros(1, 3, 32, 32)),
                   scripted)
    line = cli_error(runner.invoke(cli, ["translate", str(scripted), str(images),
                                         str(tmp_path / "out")]))
    assert re.search(r"is a TorchScript archive .*not a checkpoint", line)


def test_resuming_an_import_fine_tunes_it(tmp_path: Path) -> None:
    nets = {"G_A": seeded(generators.resnet_6blocks(ngf=4), 1),
            "G_B": seeded(generators.resnet_6blocks(ngf=4), 2)}
    source = official_folder(tmp_path / "official", nets)
    imported = import_official(source, tmp_path / "runs" / "ft",
                               options={"ngf": "4", "ndf": "4", "load_size": "36",
                                        "crop_size": "32"})
    assert imported.fresh == ["disc_a", "disc_b"]
    sets = ["train.max_steps=2", "data.num_workers=0", "run.device=cpu",
            "data.root=datasets/monet2photo", "data.catalog=monet2photo"]
    args = ["run", str(imported.run_dir / "recipe.toml"), "--resume", str(imported.run_dir),
            *[a for s in sets for a in ("--set", s)]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "from step 0" in result.output
    steps = [step for step, _ in list_checkpoints(imported.run_dir / "checkpoints")]
    assert steps[-1] == 2


@pytest.mark.parametrize(("lambdas", "cycle", "identity", "factors"), [
    ({"lambda_A": "10", "lambda_B": "10", "lambda_identity": "0.5"}, 10.0, 5.0, (1.0, 1.0)),
    ({"lambda_A": "10", "lambda_B": "5", "lambda_identity": "0.5"}, 10.0, 5.0, (1.0, 0.5)),
    ({"lambda_A": "0", "lambda_B": "4", "lambda_identity": "0"}, 4.0, 0.0, (0.0, 1.0)),
])
def test_official_lambdas_become_term_weights_and_domain_factors(
        lambdas: dict[str, str], cycle: float, identity: float,
        factors: tuple[float, float]) -> None:
    from imtrans.catalogue.recipe_loader import recipe_from_dict
    from imtrans.zoo.options import recipe_from_options

    raw = recipe_from_options({"model": "cycle_gan", **lambdas})
    recipe = recipe_from_dict({**raw, "data": {"root": "x"}})
    weight_a, weight_b = factors
    # The official terms: cycle A * lambda_A, cycle B * lambda_B, identity against A *
    # lambda_A * lambda_identity, identity against B * lambda_B * lambda_identity.
    lambda_a, lambda_b = float(lambdas["lambda_A"]), float(lambdas["lambda_B"])
    assert recipe.losses["cycle"].kwargs["weight"] * weight_a == lambda_a
    assert recipe.losses["cycle"].kwargs["weight"] * weight_b == lambda_b
    assert recipe.losses["identity"].kwargs["weight"] == identity
    assert (recipe.trainer.kwargs["weight_a"], recipe.trainer.kwargs["weight_b"]) == factors
    assert recipe.losses["cycle"].kwargs["weight"] == cycle
