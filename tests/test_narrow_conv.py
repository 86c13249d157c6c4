"""Convolutions to a few channels computed as strided ones with more
(`imtrans.inference.narrow_conv`): the plain convolution's values for any size, padding and
layout, only the convolutions it computes the same replaced, and the CPU bf16 translator's
last layer stacked while an fp32 translator keeps its own."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

from imtrans.inference import load_translator
from imtrans.inference.narrow_conv import (
    ColumnStackedConv2d,
    column_stacked_conv2d,
    columns_per_position,
    stack_narrow_convs,
)

pytestmark = pytest.mark.floor

CHANNELS_LAST = torch.channels_last


def _conv(out_channels: int, kernel: tuple[int, int], padding: tuple[int, int],
          bias: bool = True, in_channels: int = 5) -> nn.Conv2d:
    torch.manual_seed(out_channels * 100 + kernel[0] * 10 + kernel[1])
    return nn.Conv2d(in_channels, out_channels, kernel, padding=padding, bias=bias).double()


@pytest.mark.parametrize("out_channels", [1, 2, 3, 5, 8])
def test_the_values_are_the_plain_convolution_s_for_any_size_padding_and_layout(
        out_channels: int) -> None:
    # float64, so that the only difference the stacking could make (the order of the same
    # sums, plus exact zeros) stays far below the tolerance: any misplaced column shows.
    shapes = [(1, 1), (2, 7), (9, 13), (6, 16)]
    for (kernel, padding), (height, width), layout, bias in itertools.product(
            [((1, 1), (0, 0)), ((3, 3), (1, 1)), ((7, 7), (3, 3)), ((3, 5), (0, 2)),
             ((7, 7), (0, 0))], shapes, [torch.contiguous_format, CHANNELS_LAST],
            [True, False]):
        if height + 2 * padding[0] < kernel[0] or width + 2 * padding[1] < kernel[1]:
            continue  # no output at all: nn.Conv2d refuses these too
        conv = _conv(out_channels, kernel, padding, bias)
        x = torch.randn(2, 5, height, width, dtype=torch.float64).contiguous(
            memory_format=layout)
        expected = conv(x)
        out = column_stacked_conv2d(x, conv.weight, conv.bias, padding,
                                    columns_per_position(out_channels))
        assert out.shape == expected.shape, (kernel, padding, height, width)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_a_channels_last_result_is_a_channels_last_view() -> None:
    conv = _conv(3, (7, 7), (3, 3), in_channels=8)
    x = torch.randn(1, 8, 20, 20, dtype=torch.float64).contiguous(memory_format=CHANNELS_LAST)
    out = ColumnStackedConv2d(conv, columns=5)(x)  # 20 columns: 4 positions of 5, no extra
    assert out.is_contiguous(memory_format=CHANNELS_LAST) and not out.is_contiguous()
    # 19 columns need extra zero columns and a cut: still channels-last strides, no copy.
    cut = ColumnStackedConv2d(conv, columns=5)(x[..., :19])
    assert cut.stride(1) == 1 and cut.shape == (1, 3, 20, 19)


def test_a_batch_of_one_is_taken_for_channels_last_by_the_layers_after_it() -> None:
    # torch guesses a layout from every stride, the unused batch stride of a batch of one
    # included: group norm took a view with the wrong one for the usual layout and rounded
    # the image otherwise than in a batch of two.
    conv = _conv(4, (3, 3), (1, 1), in_channels=6).float()
    x = torch.randn(2, 6, 16, 16).contiguous(memory_format=CHANNELS_LAST).bfloat16()
    with torch.no_grad():
        pair = column_stacked_conv2d(x, conv.weight.bfloat16(), conv.bias.bfloat16(), (1, 1), 4)
        for index in range(2):
            alone = column_stacked_conv2d(x[index:index + 1], conv.weight.bfloat16(),
                                          conv.bias.bfloat16(), (1, 1), 4)
            assert torch.equal(alone, pair[index:index + 1])
            normed = torch.nn.functional.group_norm(alone, 4)
            assert normed.is_contiguous(memory_format=CHANNELS_LAST) and not normed.is_contiguous()
            assert torch.equal(normed, torch.nn.functional.group_norm(pair, 4)[index:index + 1])


def test_the_layer_follows_its_weights_and_takes_an_unbatched_image() -> None:
    conv = _conv(3, (3, 3), (1, 1))
    layer = ColumnStackedConv2d(conv, columns=5)
    assert layer.weight is conv.weight and layer.bias is conv.bias
    assert set(layer.state_dict()) == set(conv.state_dict())
    image = torch.randn(5, 8, 11, dtype=torch.float64)
    torch.testing.assert_close(layer(image), conv(image), rtol=0, atol=1e-12)
    with torch.no_grad():  # the stacked kernel is built on each call: never stale
        conv.weight.mul_(-2)
        conv.bias.add_(1)
    torch.testing.assert_close(layer(image), conv(image), rtol=0, atol=1e-12)


def test_columns_fill_a_group_of_16_channels() -> None:
    assert [columns_per_position(n) for n in (1, 2, 3, 4, 5, 8, 9, 64)] == \
        [16, 8, 5, 4, 3, 2, 1, 1]


class _Scaled(nn.Conv2d):
    """A convolution subclass whose forward differs: never replaced."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


def test_only_convolutions_it_computes_the_same_are_replaced() -> None:
    hooked = nn.Conv2d(8, 3, 3)
    hooked.register_forward_hook(lambda module, inputs, output: output * 0)
    kept = [nn.Conv2d(8, 3, 3, stride=2), nn.Conv2d(8, 3, 3, dilation=2),
            nn.Conv2d(8, 4, 3, groups=2), nn.Conv2d(8, 3, 3, padding=1, padding_mode="reflect"),
            nn.Conv2d(8, 3, 3, padding="same"), nn.Conv2d(8, 9, 3), _Scaled(8, 3, 3), hooked,
            nn.ConvTranspose2d(8, 3, 3)]
    last = nn.Conv2d(8, 3, 7, padding=3)
    network = nn.Sequential(*kept, nn.Sequential(nn.ReLU(), last))
    names = set(network.state_dict())
    stack_narrow_convs(network)
    assert all(network[i] is layer for i, layer in enumerate(kept))
    assert isinstance(network[len(kept)][1], ColumnStackedConv2d)
    assert network[len(kept)][1].weight is last.weight
    assert set(network.state_dict()) == names


def _layers(module: nn.Module) -> set[type[nn.Module]]:
    return {type(layer) for layer in module.modules()}


def test_cpu_bf16_translators_stack_the_last_layer_and_fp32_ones_do_not(
        cyclegan_run: Path) -> None:
    exact = load_translator(cyclegan_run, device="cpu")
    assert ColumnStackedConv2d not in _layers(exact.generator)
    low = load_translator(cyclegan_run, device="cpu", precision="bf16")
    assert ColumnStackedConv2d in _layers(low.generator)
    plain = load_translator(cyclegan_run, device="cpu", precision="bf16")
    # The same bf16 generator with its last layer back as the convolution it stands for.
    for module in plain.generator.modules():
        for name, child in module.named_children():
            if isinstance(child, ColumnStackedConv2d):
                conv = nn.Conv2d(child.weight.shape[1], child.weight.shape[0],
                                 tuple(child.weight.shape[2:]), padding=child.padding)
                conv.weight, conv.bias = child.weight, child.bias
                setattr(module, name, conv)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    out, reference = low(images), plain(images)
    # The same products summed in float32 either way; at most one bf16 rounding step of the
    # layer's outputs (2 ** -7 below 2 in magnitude) apart after tanh.
    assert (out - reference).abs().max() <= 2**-7
    assert (out - exact(images)).abs().max() < 0.08  # 10 of 255 levels, as bf16 alone
    # Each image comes out as it does alone, whatever else is in its batch (the fixture's
    # generator is 4 channels wide: its first convolution is stacked too, before a norm).
    for index in range(2):
        assert torch.equal(low(images[index:index + 1]), out[index:index + 1])
