"""Tests of imtrans.nn against the official networks' structure and sizes, plus options.

Full-size networks are built on the meta device (nothing allocated, shapes still
propagate); real forward passes use ngf/ndf 8."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any, get_type_hints

import pytest
import torch
from torch import nn

from imtrans.errors import InvalidArgumentError
from imtrans.nn import (
    ResnetGenerator,
    feature_channels,
    generator_features,
    init_weights,
    patchgan,
    pixel,
    resnet,
    resnet_6blocks,
    resnet_9blocks,
    unet,
    unet_128,
    unet_256,
)
from imtrans.nn.generators.resnet import ResnetBlock
from imtrans.nn.layers import conv_bias, norm_layer

pytestmark = pytest.mark.floor  # CI runs these on the torch floor too

Builder = Callable[..., nn.Module]
_GEN = (resnet, resnet_9blocks, resnet_6blocks, unet, unet_256, unet_128)
GENERATORS: dict[str, Builder] = {b.__name__: b for b in _GEN}
DISCRIMINATORS: dict[str, Builder] = {b.__name__: b for b in (patchgan, pixel)}
BUILDERS = GENERATORS | DISCRIMINATORS
# Norm layers per builder at its defaults: ResNet 3 + 2 per block + 2; U-Net one per down
# conv except the outermost and innermost, one per up conv except the outermost.
NORM_COUNT = {"resnet": 23, "resnet_9blocks": 23, "resnet_6blocks": 17, "unet": 13,
              "unet_256": 13, "unet_128": 11, "patchgan": 3, "pixel": 1}  # fmt: skip
WIDTH = {name: "ngf" for name in GENERATORS} | {name: "ndf" for name in DISCRIMINATORS}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def count(net: nn.Module, kind: type[nn.Module] | tuple[type[nn.Module], ...]) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


def tiny(name: str, **kwargs: Any) -> nn.Module:
    return BUILDERS[name](**{WIDTH[name]: 8}, **kwargs)


# Counts of the official networks at ngf/ndf 64. The PatchGAN with n_layers=5 count is
# for 3 input channels and instance norm (the defaults); "none" gives the same count since
# instance norm has no parameters and both keep the conv biases.
@pytest.mark.parametrize(
    ("builder", "kwargs", "params", "out_shape"),
    [
        (resnet_9blocks, {}, 11_378_179, (1, 3, 256, 256)),
        (resnet_6blocks, {}, 7_837_699, (1, 3, 256, 256)),
        (resnet, {"n_blocks": 9}, 11_378_179, (1, 3, 256, 256)),
        (unet_256, {}, 54_413_955, (1, 3, 256, 256)),
        (unet_128, {}, 41_828_995, (1, 3, 256, 256)),
        (patchgan, {}, 2_764_737, (1, 1, 30, 30)),
        (patchgan, {"in_channels": 6, "norm": "batch"}, 2_768_705, (1, 1, 30, 30)),
        (patchgan, {"n_layers": 5}, 11_154_369, (1, 1, 6, 6)),
        (patchgan, {"n_layers": 5, "norm": "none"}, 11_154_369, (1, 1, 6, 6)),
        (pixel, {}, 8_705, (1, 1, 256, 256)),
    ],
)
def test_official_sizes(
    builder: Builder, kwargs: dict[str, Any], params: int, out_shape: tuple[int, ...]
) -> None:
    with torch.device("meta"):
        net = builder(**kwargs)
        out = net(torch.empty(1, kwargs.get("in_channels", 3), 256, 256))
    assert n_params(net) == params
    assert tuple(out.shape) == out_shape


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_forward(name: str) -> None:
    torch.manual_seed(0)
    net = tiny(name, in_channels=1, out_channels=4)
    side = max(32, net.size_multiple)
    x = torch.rand(2, 1, side, side) * 2 - 1
    y = net(x)
    assert y.shape == (2, 4, side, side)
    assert y.abs().max().item() <= 1.0
    assert y.std().item() > 0  # not a constant map


@pytest.mark.parametrize(("name", "side", "out_side"), [("patchgan", 64, 6), ("pixel", 40, 40)])
def test_discriminator_forward(name: str, side: int, out_side: int) -> None:
    torch.manual_seed(0)
    y = tiny(name, in_channels=4)(torch.rand(2, 4, side, side))
    assert y.shape == (2, 1, out_side, out_side)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", GENERATORS)
def test_resize_conv_replaces_transposed_convs(name: str) -> None:
    net = tiny(name, upsampling="resize_conv")
    levels = 2 if name.startswith("resnet") else net.size_multiple.bit_length() - 1
    assert count(net, nn.ConvTranspose2d) == 0
    assert count(net, nn.Upsample) == levels
    assert count(tiny(name), nn.ConvTranspose2d) == levels
    side = max(32, net.size_multiple)
    assert net(torch.zeros(2, 3, side, side)).shape == (2, 3, side, side)


@pytest.mark.parametrize(
    ("builder", "kwargs", "expected"),
    [(resnet_9blocks, {}, 9), (resnet, {"n_blocks": 4}, 4), (unet_256, {}, 3),
     (unet_128, {}, 2), (unet, {"num_downs": 5}, 0)],
)  # fmt: skip
def test_dropout_flag(builder: Builder, kwargs: dict[str, Any], expected: int) -> None:
    with torch.device("meta"):
        on = builder(dropout=True, **kwargs)
        off = builder(dropout=False, **kwargs)
    assert count(on, nn.Dropout) == expected
    assert all(m.p == 0.5 for m in on.modules() if isinstance(m, nn.Dropout))
    assert count(off, nn.Dropout) == 0
    assert n_params(on) == n_params(off)


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize(
    ("norm", "kind"),
    [("instance", nn.InstanceNorm2d), ("batch", nn.BatchNorm2d),
     ("syncbatch", nn.SyncBatchNorm), ("none", None)],
)  # fmt: skip
def test_norm_choice(name: str, norm: str, kind: type[nn.Module] | None) -> None:
    with torch.device("meta"):
        net = BUILDERS[name](norm=norm)
        reference = BUILDERS[name](norm="instance")
    norms = (nn.InstanceNorm2d, nn.BatchNorm2d, nn.SyncBatchNorm)
    expected = NORM_COUNT[name] if kind else 0
    assert count(net, norms) == expected
    if kind:
        assert count(net, kind) == expected
    for m in net.modules():
        if isinstance(m, nn.InstanceNorm2d):
            assert not m.affine and not m.track_running_stats
        if isinstance(m, nn.BatchNorm2d | nn.SyncBatchNorm):
            assert m.affine and m.track_running_stats
    # Instance norm has no parameters, and "none" keeps the biases instance norm keeps.
    if norm == "none":
        assert n_params(net) == n_params(reference)


def test_conv_bias_rule() -> None:
    names = ("instance", "batch", "syncbatch", "none")
    assert [conv_bias(n) for n in names] == [True, False, False, True]
    with torch.device("meta"):
        batch, plain = resnet(norm="batch"), resnet(norm="none")
    assert batch.model[1].bias is None and batch.model[4].bias is None
    assert batch.model[-2].bias is not None  # feeds Tanh, not a norm
    assert plain.model[1].bias is not None and isinstance(plain.model[2], nn.Identity)
    assert isinstance(norm_layer("none", 8), nn.Identity)


def test_resnet_layer_indices() -> None:
    with torch.device("meta"):
        model = resnet_9blocks().model
        resized = resnet_9blocks(upsampling="resize_conv").model
    assert isinstance(model[0], nn.ReflectionPad2d) and model[0].padding == (3, 3, 3, 3)
    assert isinstance(model[1], nn.Conv2d) and model[1].kernel_size == (7, 7)
    assert isinstance(model[2], nn.InstanceNorm2d) and isinstance(model[3], nn.ReLU)
    for i, channels in ((4, 128), (7, 256)):
        assert isinstance(model[i], nn.Conv2d)
        assert model[i].stride == (2, 2) and model[i].out_channels == channels
    assert isinstance(model[8], nn.InstanceNorm2d) and model[8].num_features == 256
    assert all(isinstance(model[i], ResnetBlock) for i in range(10, 19))
    assert isinstance(model[19], nn.ConvTranspose2d) and model[19].output_padding == (1, 1)
    assert [type(m) for m in model[-3:]] == [nn.ReflectionPad2d, nn.Conv2d, nn.Tanh]
    assert len(model) == 28
    # The encoder, where CUT takes features, is the same with either upsampling.
    assert [type(m) for m in resized[:19]] == [type(m) for m in model[:19]]


def test_unet_structure_and_official_keys() -> None:
    with torch.device("meta"):
        net = unet_256()
        keys = {
            name: tuple(t.shape)
            for part in (net, resnet_9blocks(), patchgan(), pixel())
            for name, t in part.state_dict().items()
        }
    outer = net.model.model
    assert outer[0].bias is None and outer[0].kernel_size == (4, 4)  # official quirk
    assert isinstance(outer[-1], nn.Tanh) and outer[-2].bias is not None
    assert (count(net, nn.LeakyReLU), count(net, nn.ReLU)) == (7, 8)
    # Names of official checkpoints' tensors, so those load unchanged.
    innermost_down = "model.model.1" + ".model.3" * 6 + ".model.1.weight"
    assert keys[innermost_down] == (512, 512, 4, 4)
    assert keys["model.10.conv_block.1.weight"] == (256, 256, 3, 3)
    assert keys["model.11.weight"] == (1, 512, 4, 4) and keys["net.5.weight"] == (1, 128, 1, 1)


@pytest.mark.parametrize(
    ("padding", "pad_kind", "conv_padding"),
    [("reflect", nn.ReflectionPad2d, (0, 0)), ("replicate", nn.ReplicationPad2d, (0, 0)),
     ("zero", None, (1, 1))],
)  # fmt: skip
def test_resnet_padding(
    padding: str, pad_kind: type[nn.Module] | None, conv_padding: tuple[int, int]
) -> None:
    torch.manual_seed(0)
    net = resnet(ngf=8, n_blocks=2, padding=padding)
    block = net.model[10].conv_block
    assert count(block, (nn.ReflectionPad2d, nn.ReplicationPad2d)) == (2 if pad_kind else 0)
    if pad_kind:
        assert count(block, pad_kind) == 2
    assert all(m.padding == conv_padding for m in block if isinstance(m, nn.Conv2d))
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_size_multiple() -> None:
    with torch.device("meta"):
        nets = [resnet_6blocks(), unet_256(), unet_128(), unet(num_downs=6)]
    assert [n.size_multiple for n in nets] == [4, 256, 128, 64]
    assert ResnetGenerator.size_multiple == 4


def big_module() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(256, 256, 3), nn.BatchNorm2d(4096), nn.Linear(512, 512))


@pytest.mark.parametrize(
    ("init", "std"),
    # The conv has fan_in = fan_out = 256 * 3 * 3 = 2304.
    [("normal", 0.02), ("xavier", 0.02 * (2 / (2 * 2304)) ** 0.5), ("kaiming", (2 / 2304) ** 0.5)],
)
def test_init_weights_statistics(init: str, std: float) -> None:
    torch.manual_seed(0)
    conv, bn, linear = net = big_module()
    init_weights(net, init, 0.02)
    assert conv.weight.std().item() == pytest.approx(std, rel=0.01)
    assert abs(conv.weight.mean().item()) < std / 100
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=1e-3)
    assert bn.weight.std().item() == pytest.approx(0.02, rel=0.05)
    for bias in (conv.bias, bn.bias, linear.bias):
        assert torch.count_nonzero(bias).item() == 0


def test_init_orthogonal_and_meta() -> None:
    torch.manual_seed(0)
    conv = big_module()[0]
    init_weights(conv, "orthogonal", 0.5)
    rows = conv.weight.reshape(256, -1)
    torch.testing.assert_close(rows @ rows.T, 0.25 * torch.eye(256), atol=1e-5, rtol=0)
    with torch.device("meta"):
        net = big_module()
        init_weights(net, "orthogonal")
    assert net[0].weight.is_meta


def test_builders_initialise() -> None:
    torch.manual_seed(0)
    disc = patchgan(init="kaiming", norm="batch")
    big = disc.model[8]  # 256 -> 512, 4x4
    assert big.weight.std().item() == pytest.approx((2 / (256 * 16)) ** 0.5, rel=0.01)
    assert torch.count_nonzero(disc.model[0].bias).item() == 0
    assert disc.model[9].weight.std().item() == pytest.approx(0.02, rel=0.15)
    gen = resnet(ngf=64, n_blocks=1, init_gain=0.05)
    assert gen.model[10].conv_block[1].weight.std().item() == pytest.approx(0.05, rel=0.01)


@pytest.mark.parametrize(
    ("builder", "kwargs", "fragments"),
    [
        (resnet, {"n_blocks": -1}, ["n_blocks", ">= 0", "-1"]),
        (patchgan, {"n_layers": 0}, ["n_layers", ">= 1", "0"]),
        (unet, {"num_downs": 4}, ["num_downs", ">= 5", "4"]),
        (unet_256, {"in_channels": 0}, ["in_channels", ">= 1"]),
        (resnet_9blocks, {"out_channels": 0}, ["out_channels", ">= 1"]),
        (resnet, {"ngf": True}, ["ngf", "True"]),
        (pixel, {"ndf": 0}, ["ndf", ">= 1"]),
        (patchgan, {"norm": "group"}, ["'group'", "'instance'", "'batch'", "'syncbatch'"]),
        (resnet, {"padding": "circular"}, ["'circular'", "'reflect'", "'zero'"]),
        (unet_128, {"upsampling": "bilinear"}, ["'bilinear'", "'resize_conv'"]),
        (pixel, {"init": "uniform"}, ["'uniform'", "'kaiming'", "'orthogonal'"]),
        (patchgan, {"init_gain": 0.0}, ["init_gain", "> 0"]),
        (partial(norm_layer, "group", 8), {}, ["'group'", "'instance'", "'none'"]),
        (partial(init_weights, nn.Linear(2, 2), "uniform"), {}, ["'uniform'", "'normal'"]),
    ],
)
def test_bad_arguments(builder: Builder, kwargs: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        builder(**kwargs)
    assert all(f in str(caught.value) for f in fragments), str(caught.value)


@pytest.mark.parametrize("name", BUILDERS)
def test_builder_signatures(name: str) -> None:
    builder = BUILDERS[name]
    params = inspect.signature(builder).parameters.values()
    hints = get_type_hints(builder)
    assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in params)
    assert {p.name for p in params} | {"return"} == set(hints)
    summary = builder.__doc__.strip().splitlines()[0]
    assert summary.endswith(".") and len(summary) < 100
    assert builder.__name__ == name


@pytest.mark.parametrize(
    ("preset", "base", "fixed", "value"),
    [(resnet_9blocks, resnet, "n_blocks", 9), (resnet_6blocks, resnet, "n_blocks", 6),
     (unet_256, unet, "num_downs", 8), (unet_128, unet, "num_downs", 7)],
)  # fmt: skip
def test_presets(preset: Builder, base: Builder, fixed: str, value: int) -> None:
    base_params = dict(inspect.signature(base, eval_str=True).parameters)
    del base_params[fixed]
    assert dict(inspect.signature(preset).parameters) == base_params
    with torch.device("meta"):
        assert n_params(preset(ngf=16)) == n_params(base(ngf=16, **{fixed: value}))
    with pytest.raises(TypeError, match=preset.__name__):
        preset(**{fixed: value})


def test_generator_features_are_the_layer_outputs_and_stop_early() -> None:
    torch.manual_seed(0)
    net = resnet(ngf=4, n_blocks=9)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    last = len(net.feature_layers) - 1
    # The last layer's output is the generator's output; the order follows the request.
    late, first = generator_features(net, x, [last, 0])
    assert torch.equal(late, net(x))
    assert torch.equal(first, torch.nn.functional.pad(x, (3, 3, 3, 3), mode="reflect"))
    shapes = [tuple(f.shape) for f in generator_features(net, x, [0, 4, 8, 12, 16])]
    assert shapes == [(2, 3, 38, 38), (2, 8, 16, 16), (2, 16, 8, 8), (2, 16, 8, 8),
                      (2, 16, 8, 8)]
    assert feature_channels(net, [0, 4, 8, 12, 16]) == [3, 8, 16, 16, 16]


def test_feature_channels_leave_the_generator_untouched() -> None:
    net = resnet(ngf=4, n_blocks=2, norm="batch").train()
    stats = [b.clone() for b in net.buffers()]
    assert feature_channels(net, [1]) == [4]
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(a, b) for a, b in zip(stats, net.buffers(), strict=True))
    with torch.device("meta"):
        on_meta = resnet(ngf=8, n_blocks=9)
    assert feature_channels(on_meta, [0, 4, 16]) == [3, 16, 32]


def test_generators_without_a_flat_layer_sequence_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="UnetGenerator does not expose"):
        generator_features(unet(num_downs=5, ngf=4), torch.zeros(1, 3, 32, 32), [0])
    with pytest.raises(InvalidArgumentError, match=r"out of range.*0 to 27"):
        feature_channels(resnet(ngf=4, n_blocks=9), [0, 28])
    with pytest.raises(InvalidArgumentError, match="at least one"):
        feature_channels(resnet(ngf=4), [])
