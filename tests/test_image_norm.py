"""Per-image normalisation that keeps channels last (`imtrans.inference.image_norm`), and the
CPU bf16 translator that uses it: the same values as instance norm in any layout, the layout
kept, fp32 translators left exactly as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imtrans.inference import load_translator
from imtrans.inference.image_norm import (
    ImageStatisticsNorm,
    image_statistics_norm,
    per_image_norms,
)
from imtrans.inference.precision import network_call

pytestmark = pytest.mark.floor

CHANNELS_LAST = torch.channels_last


def _batch(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(n)
    # Channels with different means and spreads, so that a mix-up of channels or images shows.
    scale = torch.linspace(0.5, 4, 6).view(1, 6, 1, 1)
    shift = torch.linspace(-3, 3, 6).view(1, 6, 1, 1) + torch.arange(n).view(n, 1, 1, 1)
    return (torch.randn(n, 6, 9, 11, generator=generator) * scale + shift).to(dtype)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("affine", [False, True])
def test_channels_last_batches_get_instance_norm_values_and_stay_channels_last(
        n: int, affine: bool) -> None:
    x = _batch(n)
    weight = torch.linspace(0.5, 2, 6) if affine else None
    bias = torch.linspace(-1, 1, 6) if affine else None
    expected = F.instance_norm(x, weight=weight, bias=bias, eps=1e-5)
    out = image_statistics_norm(x.contiguous(memory_format=CHANNELS_LAST), weight, bias, 1e-5)
    assert out.is_contiguous(memory_format=CHANNELS_LAST) and not out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # Each image normalised on its own: zero mean and unit variance per image and channel.
    if not affine:
        torch.testing.assert_close(out.mean(dim=(2, 3)), torch.zeros(n, 6), atol=1e-5,
                                   rtol=0)


def test_bf16_channels_last_is_within_bf16_rounding_of_instance_norm() -> None:
    x = _batch(2, torch.bfloat16)
    expected = F.instance_norm(x.float())
    out = image_statistics_norm(x.contiguous(memory_format=CHANNELS_LAST))
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=CHANNELS_LAST)
    # Computed in fp32 and rounded once: each value within half a step of bf16 (8 significant
    # bits) of the exact one (instance norm's own bf16 result was off by up to two steps).
    error = (out.float() - expected).abs()
    assert (error <= expected.abs() * 2**-8 + 1e-6).all()


def test_the_usual_layout_goes_through_instance_norm_itself_bit_for_bit() -> None:
    x = _batch(3)
    weight, bias = torch.linspace(0.5, 2, 6), torch.linspace(-1, 1, 6)
    assert torch.equal(image_statistics_norm(x, weight, bias, 1e-3),
                       F.instance_norm(x, weight=weight, bias=bias, eps=1e-3))


def test_the_layer_takes_one_image_without_a_batch_dimension_as_instance_norm_does() -> None:
    x = _batch(1)[0]
    norm = nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    layer = ImageStatisticsNorm(norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(layer(x), norm(x))
    assert set(layer.state_dict()) == set(norm.state_dict())


def test_only_norms_by_the_image_s_own_statistics_are_replaced() -> None:
    tracking = nn.InstanceNorm2d(4, track_running_stats=True).eval()  # running statistics
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4, affine=True),
                            nn.Sequential(nn.InstanceNorm2d(4)), tracking, nn.BatchNorm2d(4))
    before = network[1].weight
    per_image_norms(network)
    assert isinstance(network[1], ImageStatisticsNorm) and network[1].weight is before
    assert isinstance(network[2][0], ImageStatisticsNorm)
    assert network[3] is tracking and isinstance(network[4], nn.BatchNorm2d)


def _norm_layers(module: nn.Module) -> list[type[nn.Module]]:
    return [type(layer) for layer in module.modules()
            if isinstance(layer, nn.InstanceNorm2d | ImageStatisticsNorm)]


def test_cpu_bf16_translators_run_channels_last_and_fp32_ones_as_before(
        cyclegan_run: Path) -> None:
    exact = load_translator(cyclegan_run, device="cpu")
    assert set(_norm_layers(exact.generator)) == {nn.InstanceNorm2d}
    weight = next(p for p in exact.generator.parameters() if p.dim() == 4)
    assert weight.is_contiguous()  # fp32 keeps its layout, so its outputs do not change
    low = load_translator(cyclegan_run, device="cpu", precision="bf16")
    assert set(_norm_layers(low.generator)) == {ImageStatisticsNorm}
    weight = next(p for p in low.generator.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=CHANNELS_LAST) and not weight.is_contiguous()
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    out, reference = low(images), exact(images)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert (out - reference).abs().max() < 0.08  # 10 of 255 levels: bf16's rounding alone


def test_fp16_on_the_cpu_keeps_the_usual_layout() -> None:
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4)).half()
    network_call(network, torch.float16, torch.device("cpu"))
    assert isinstance(network[1], nn.InstanceNorm2d)
    assert network[0].weight.is_contiguous()
