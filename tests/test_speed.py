"""The [speed] switches: bf16, channels_last, fused Adam, torch.compile, CUDA graphs."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch

from imtrans.catalogue.assembly import build_networks, build_trainer
from imtrans.catalogue.plugins import Components, load_components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.errors import RecipeError
from imtrans.training.build import build_training
from imtrans.training.speed import apply_speed


@pytest.fixture(scope="module")
def builtins() -> Components:
    return load_components(autoload=False)


def losses_over_steps(builtins: Components, trainer: str, steps: int,
                      device: str = "cpu", **speed: object) -> torch.Tensor:
    """Every loss term of ``steps`` seeded training steps, one row per step."""
    torch.manual_seed(0)
    raw = {"trainer": {"name": trainer}, "data": {"root": "unused"},
           "generator": {"ngf": 4}, "discriminator": {"ndf": 4}, "speed": speed}
    if trainer == "pix2pix":
        raw["generator"] |= {"name": "unet", "num_downs": 5}
    recipe = recipe_from_dict(raw, registry=builtins)
    trainer_obj = build_training(recipe, builtins, device=torch.device(device), data=False).trainer
    generator = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(steps):
        batch = {k: (torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1).to(device)
                 for k in ("A", "B")}
        out = trainer_obj.training_step(batch)
        rows.append(torch.stack([out[k] for k in sorted(out)]))
    return torch.stack(rows).cpu()


@pytest.mark.parametrize("trainer", ["pix2pix", "cyclegan"])
def test_bf16_tracks_fp32(builtins, trainer: str) -> None:
    # bf16 keeps 8 mantissa bits: each rounded value is off by up to 2^-9 (0.2%). The G loss
    # is dominated by L1 / cycle terms, means over many pixels whose rounding errors mostly
    # cancel; measured over 10 steps (ngf 8): at most 0.2% (pix2pix) and 1.0% (CycleGAN).
    # 3% leaves room for other CPUs' kernels while still catching a loss computed in bf16
    # or a broken cast (either is off by far more after a few Adam steps).
    fp32 = losses_over_steps(builtins, trainer, 5)
    bf16 = losses_over_steps(builtins, trainer, 5, precision="bf16")
    g = 1 if trainer == "pix2pix" else 2  # sorted keys: D, G, ... / D_A, D_B, G, ...
    relative = ((bf16[:, g] - fp32[:, g]).abs() / fp32[:, g].abs()).max().item()
    assert relative < 0.03, f"bf16 G loss differs from fp32 by {relative:.2%}"
    assert torch.isfinite(bf16).all()


def test_bf16_networks_run_in_bf16_and_return_fp32(builtins) -> None:
    recipe = recipe_from_dict({"trainer": {"name": "cyclegan"}, "data": {"root": "unused"},
                               "generator": {"ngf": 4}, "discriminator": {"ndf": 4},
                               "speed": {"precision": "bf16"}}, registry=builtins)
    networks = build_networks(recipe, builtins, build_trainer(recipe, builtins))
    apply_speed(networks, recipe.speed, torch.device("cpu"))
    seen = []
    networks["gen_ab"].model[1].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = networks["gen_ab"](torch.rand(1, 3, 32, 32))
    assert seen == [torch.bfloat16] and out.dtype == torch.float32
    # The weights stay fp32 (the master copy Adam updates), and a deep copy (periodic
    # evaluation translates with one) runs itself, not the original.
    assert all(p.dtype == torch.float32 for p in networks["gen_ab"].parameters())
    twin = copy.deepcopy(networks["gen_ab"])
    assert twin.forward.__self__ is twin


def test_channels_last_gives_the_same_losses(builtins) -> None:
    # Only the summation order of the convolutions changes: float rounding, nothing more.
    # (pix2pix over several steps; CycleGAN's tiny discriminators amplify any rounding
    # difference chaotically over steps, fused Adam's too, so it is compared on one step.)
    plain = losses_over_steps(builtins, "pix2pix", 4)
    torch.testing.assert_close(losses_over_steps(builtins, "pix2pix", 4, channels_last=True),
                               plain, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(losses_over_steps(builtins, "cyclegan", 1, channels_last=True),
                               losses_over_steps(builtins, "cyclegan", 1), rtol=1e-4, atol=1e-5)


def test_channels_last_networks_and_inputs(builtins) -> None:
    recipe = recipe_from_dict({"trainer": {"name": "pix2pix"}, "data": {"root": "unused"},
                               "generator": {"name": "unet", "num_downs": 5, "ngf": 4},
                               "discriminator": {"ndf": 4}, "speed": {"channels_last": True}},
                              registry=builtins)
    networks = build_networks(recipe, builtins, build_trainer(recipe, builtins))
    apply_speed(networks, recipe.speed, torch.device("cpu"))
    weight = networks["gen"].model.model[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert networks["disc"](torch.rand(1, 6, 32, 32)).is_contiguous(
        memory_format=torch.channels_last)


def test_fused_adam_on_the_cpu(builtins) -> None:
    # torch has a fused CPU Adam (since 2.4): the same update up to rounding.
    torch.testing.assert_close(losses_over_steps(builtins, "pix2pix", 3, fused_adam=True),
                               losses_over_steps(builtins, "pix2pix", 3), rtol=1e-4, atol=1e-5)
    recipe = recipe_from_dict({"trainer": {"name": "pix2pix"}, "data": {"root": "unused"},
                               "speed": {"fused_adam": True}}, registry=builtins)
    trainer = build_training(recipe, builtins, device=torch.device("cpu"), data=False).trainer
    assert [opt.param_groups[0]["fused"] for opt in trainer.optimizers().values()] == [True] * 2


@pytest.mark.parametrize(("saved", "resumed"), [(False, True), (True, False)])
def test_resume_takes_fused_adam_from_the_recipe_not_the_checkpoint(saved: bool,
                                                                   resumed: bool) -> None:
    from imtrans.core.state_tensors import load_optimizer_tensors, optimizer_tensors

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    first = torch.optim.Adam(net.parameters(), lr=0.1, fused=saved or None)
    for _ in range(2):
        first.zero_grad()
        net(torch.ones(1, 4)).sum().backward()
        first.step()
    twin = copy.deepcopy(net)
    second = torch.optim.Adam(twin.parameters(), lr=0.1, fused=resumed or None)
    load_optimizer_tensors("opt", second, *optimizer_tensors("opt", first))
    assert bool(second.param_groups[0]["fused"]) is resumed
    assert second.state_dict()["state"][0]["step"].item() == 2
    for model, opt in ((net, first), (twin, second)):  # one more step each: the same update
        opt.zero_grad()
        model(torch.ones(1, 4)).sum().backward()
        opt.step()
    torch.testing.assert_close(twin.weight, net.weight, rtol=1e-6, atol=1e-7)


def test_fused_adam_unsupported_device_is_a_clear_error(builtins) -> None:
    recipe = recipe_from_dict({"trainer": {"name": "pix2pix"}, "data": {"root": "unused"},
                               "speed": {"fused_adam": True}}, registry=builtins)
    with pytest.raises(RecipeError, match=r"speed\.fused_adam = true: .* no fused Adam on 'meta'"):
        apply_speed({}, recipe.speed, torch.device("meta"))


def test_cuda_graphs_off_cuda_is_a_clear_error(builtins) -> None:
    recipe = recipe_from_dict({"trainer": {"name": "cyclegan"}, "data": {"root": "unused"},
                               "speed": {"cuda_graphs": True}}, registry=builtins)
    with pytest.raises(RecipeError, match=r"speed\.cuda_graphs = true needs a CUDA device"):
        apply_speed({}, recipe.speed, torch.device("cpu"))


def test_unknown_speed_key_and_value_are_refused(builtins) -> None:
    base = {"trainer": {"name": "cyclegan"}, "data": {"root": "unused"}}
    with pytest.raises(RecipeError, match=r"speed\.precision"):
        recipe_from_dict(base | {"speed": {"precision": "fp16"}}, registry=builtins)
    with pytest.raises(RecipeError, match=r"speed\.compiled: unknown key"):
        recipe_from_dict(base | {"speed": {"compiled": True}}, registry=builtins)


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compile_on_the_cpu(builtins) -> None:
    # Two steps of the smallest pix2pix: compiles each network (forward and backward), then
    # the same losses as eager up to the fused kernels' rounding.
    compiled = losses_over_steps(builtins, "pix2pix", 2, compile=True)
    torch.testing.assert_close(compiled, losses_over_steps(builtins, "pix2pix", 2),
                               rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("trainer", ["pix2pix", "cyclegan"])
def test_bf16_channels_last_compile_on_the_gpu(builtins, trainer: str) -> None:
    fast = losses_over_steps(builtins, trainer, 4, "cuda", precision="bf16",
                             channels_last=True, compile=True, fused_adam=True)
    assert torch.isfinite(fast).all()
    g = 1 if trainer == "pix2pix" else 2
    fp32 = losses_over_steps(builtins, trainer, 4, "cuda")
    assert ((fast[:, g] - fp32[:, g]).abs() / fp32[:, g].abs()).max() < 0.03
