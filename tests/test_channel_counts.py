"""Any channel count, for every registered generator and discriminator (a plugin's included):
1-band CT, 6-band to 1-band, 16 bands, 4 to 13 bands; pix2pix's conditional discriminator
sees the input's and the output's channels together.

The parameters are what :func:`imtrans.catalogue.plugins.load_components` finds at collection
time, as in ``tests/test_contracts.py``: a newly registered network is tested here too.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from imtrans.catalogue.plugins import load_components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.core.contracts import size_multiple
from imtrans.core.registry import Entry, Registry, accepted_arguments
from imtrans.recipe.schema import CHANNEL_LIMIT
from imtrans.training.build import build_training

COMPONENTS = load_components()
WIDTH = 4  # ngf / ndf of every network built here
LARGEST_MULTIPLE = 256  # generators needing larger images are skipped (too slow here)
#: (in_channels, out_channels) of the generators.
GENERATOR_CHANNELS = [(1, 1), (6, 1), (16, 16), (4, 13)]
#: in_channels of the discriminators: pix2pix's sees in + out (6 + 1, 16 + 16).
DISCRIMINATOR_CHANNELS = [1, 2, 4, 7, 13, 17, 32]
CPU = torch.device("cpu")


def entry_id(entry: Entry) -> str:
    return entry.name if entry.source == "imtrans" else f"{entry.name}[{entry.source}]"


def entries(kind: str) -> list[Any]:
    """The registered entries of ``kind`` as pytest parameters."""
    return [pytest.param(entry, id=entry_id(entry))
            for entry in COMPONENTS.registry(kind).entries()]


def build(registry: Registry, entry: Entry, **wanted: Any) -> nn.Module:
    """Build ``entry`` with ``wanted``; skip it when its builder takes no channel counts or
    needs an argument without a default."""
    accepted = accepted_arguments(entry.builder)
    missing = [n for n in wanted if "channels" in n and n not in accepted]
    if missing:
        pytest.skip(f"{registry.kind} {entry.name!r} takes no {', '.join(missing)}")
    kwargs = {k: v for k, v in wanted.items() if k in accepted}
    needed = [n for n, p in accepted.items() if p.default is p.empty and n not in kwargs]
    if needed:
        pytest.skip(f"{registry.kind} {entry.name!r} needs arguments this test cannot guess: "
                    f"{', '.join(needed)}")
    torch.manual_seed(0)
    net: nn.Module = registry.create(entry.name, **kwargs)
    return net


def images(*shape: int, seed: int = 0) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def upsamplings(entry: Entry) -> list[str | None]:
    return ["transposed", "resize_conv"] if "upsampling" in accepted_arguments(
        entry.builder) else [None]


@pytest.mark.parametrize(("in_channels", "out_channels"), GENERATOR_CHANNELS,
                         ids=[f"{a}to{b}" for a, b in GENERATOR_CHANNELS])
@pytest.mark.parametrize("entry", entries("generators"))
def test_every_generator_maps_any_band_count_to_any_other(
        entry: Entry, in_channels: int, out_channels: int) -> None:
    for upsampling in upsamplings(entry):
        extra = {} if upsampling is None else {"upsampling": upsampling}
        if entry.name == "unet":
            extra["num_downs"] = 5  # 32 px, the size of the tiny runs
        net = build(COMPONENTS.generators, entry, in_channels=in_channels,
                    out_channels=out_channels, ngf=WIDTH, **extra)
        multiple = size_multiple(net)
        if multiple > LARGEST_MULTIPLE:
            pytest.skip(f"size_multiple {multiple} > {LARGEST_MULTIPLE}: too large an image")
        side = max(multiple, 16)
        source = images(2, in_channels, side, side).requires_grad_(True)
        out = net(source)
        assert out.shape == (2, out_channels, side, side), (upsampling, tuple(out.shape))
        assert torch.isfinite(out).all() and out.abs().max() <= 1
        # Every input band reaches the output (none dropped by the first layer).
        (grad,) = torch.autograd.grad(out.sum(), source)
        assert (grad.abs().sum(dim=(0, 2, 3)) > 0).all(), upsampling


def test_a_generator_given_the_wrong_band_count_fails_naming_the_channels() -> None:
    net = COMPONENTS.generators.create("resnet", in_channels=6, out_channels=1, ngf=WIDTH)
    with pytest.raises(RuntimeError, match="6"):
        net(images(1, 3, 16, 16))


@pytest.mark.parametrize("in_channels", DISCRIMINATOR_CHANNELS)
@pytest.mark.parametrize("entry", entries("discriminators"))
def test_every_discriminator_takes_any_band_count(entry: Entry, in_channels: int) -> None:
    net = build(COMPONENTS.discriminators, entry, in_channels=in_channels, ndf=WIDTH)
    source = images(2, in_channels, 32, 32).requires_grad_(True)
    out = net(source)
    assert out.dim() == 4 and out.shape[:2] == (2, 1), tuple(out.shape)
    assert torch.isfinite(out).all()
    (grad,) = torch.autograd.grad(out.sum(), source)
    assert (grad.abs().sum(dim=(0, 2, 3)) > 0).all()  # every band is looked at


def first_conv(net: nn.Module) -> nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))


def tiny_training(trainer: str, in_channels: int, out_channels: int, **data: Any) -> Any:
    raw = {"trainer": {"name": trainer},
           "data": {"root": "unused", "in_channels": in_channels,
                    "out_channels": out_channels} | data,
           "generator": {"ngf": WIDTH}, "discriminator": {"ndf": WIDTH}}
    if trainer == "pix2pix":
        raw["generator"] |= {"name": "unet", "num_downs": 5}
    if trainer == "cyclegan" and in_channels != out_channels:
        raw["losses"] = {"identity": {"weight": 0}}
    recipe = recipe_from_dict(raw, registry=COMPONENTS)
    torch.manual_seed(0)
    return build_training(recipe, COMPONENTS, device=CPU, data=False, speed=False).trainer


def test_pix2pix_builds_its_discriminator_on_input_and_output_bands() -> None:
    trainer = tiny_training("pix2pix", 6, 1)
    assert first_conv(trainer.gen).in_channels == 6
    assert first_conv(trainer.disc).in_channels == 6 + 1
    batch = {"A": images(2, 6, 32, 32, seed=1), "B": images(2, 1, 32, 32, seed=2)}
    assert trainer.gen(batch["A"]).shape == (2, 1, 32, 32)
    torch.manual_seed(1)
    losses = trainer.training_step(batch)
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses


def test_cyclegan_builds_each_direction_with_its_domains_bands() -> None:
    trainer = tiny_training("cyclegan", 4, 13)
    assert first_conv(trainer.gen_ab).in_channels == 4
    assert first_conv(trainer.gen_ba).in_channels == 13
    assert first_conv(trainer.disc_a).in_channels == 4
    assert first_conv(trainer.disc_b).in_channels == 13
    batch = {"A": images(1, 4, 32, 32, seed=1), "B": images(1, 13, 32, 32, seed=2)}
    assert trainer.gen_ab(batch["A"]).shape == (1, 13, 32, 32)
    torch.manual_seed(1)
    losses = trainer.training_step(batch)
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses


def test_recipes_take_channel_counts_up_to_the_limit() -> None:
    assert CHANNEL_LIMIT >= 16
    trainer = tiny_training("pix2pix", CHANNEL_LIMIT, CHANNEL_LIMIT)
    assert first_conv(trainer.disc).in_channels == 2 * CHANNEL_LIMIT
