"""Tests of the example plugin's losses, run after `pip install` of this package."""

from __future__ import annotations

import pytest
import torch
from imtrans_example_loss import CharbonnierLoss, SSIMLoss

import imtrans


def test_charbonnier_matches_its_formula() -> None:
    output, target = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    loss = CharbonnierLoss(weight=2.0, eps=1e-3)(output, target)
    expected = 2.0 * ((0.5**2 + 1e-6) ** 0.5 - 1e-3)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_charbonnier_is_close_to_l1_for_large_differences() -> None:
    torch.manual_seed(0)
    output, target = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1
    l1 = (output - target).abs().mean()
    assert CharbonnierLoss()(output, target).item() == pytest.approx(l1.item(), abs=2e-3)


def test_ssim_is_zero_for_identical_images_and_grows_with_noise() -> None:
    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    loss = SSIMLoss()
    assert loss(image, image).item() == pytest.approx(0.0, abs=1e-5)
    slightly = loss(image, image + 0.05 * torch.randn_like(image)).item()
    heavily = loss(image, image + 0.5 * torch.randn_like(image)).item()
    assert 0 < slightly < heavily


@pytest.mark.parametrize("loss", [CharbonnierLoss(), SSIMLoss()])
def test_gradient_reaches_the_output(loss: torch.nn.Module) -> None:
    torch.manual_seed(0)
    output = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_()
    loss(output, torch.rand(1, 3, 16, 16) * 2 - 1).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(imtrans.InvalidArgumentError, match="window_size"):
        SSIMLoss(window_size=4)
    with pytest.raises(imtrans.InvalidArgumentError, match="eps"):
        CharbonnierLoss(eps=0.0)


def test_plugin_is_discovered_through_its_entry_point() -> None:
    loaded = imtrans.load_components()
    assert loaded.losses.get("charbonnier").source == "imtrans-example-loss"
    assert loaded.losses.get("ssim").source == "imtrans-example-loss"
    assert loaded.losses.create("charbonnier", weight=3.0).weight == 3.0


def test_allowlist_without_the_plugin_leaves_it_out() -> None:
    loaded = imtrans.load_components(allow={"some-other-plugin"})
    assert "charbonnier" not in loaded.losses
