"""Tests for imtrans.losses: hand-computed values, gradients, the gradient penalty, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from imtrans.errors import InvalidArgumentError
from imtrans.losses import (
    AdversarialLoss,
    CycleLoss,
    HingeLoss,
    IdentityLoss,
    L1Loss,
    LSGANLoss,
    PairLoss,
    VanillaGANLoss,
    WGANGPLoss,
    gan_loss,
    gradient_penalty,
    hinge_loss,
    l1_loss,
    lsgan_loss,
    wasserstein_loss,
)

pytestmark = pytest.mark.floor  # CI runs these on the torch floor too

ADVERSARIAL = [VanillaGANLoss, LSGANLoss, HingeLoss, WGANGPLoss]
PAIR = [L1Loss, CycleLoss, IdentityLoss]


class LinearCritic(nn.Module):
    """D(x) = sum over C, H, W of w * x, one score per sample: grad_x D = w everywhere."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x: Tensor) -> Tensor:
        return (self.weight * x).flatten(1).sum(dim=1)


class HalfSquareCritic(nn.Module):
    """D(x) = 0.5 * ||x||^2 per sample: grad_x D = x, so the norm differs per sample."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * x.pow(2).flatten(1).sum(dim=1)


def close(actual: Tensor, expected: float) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), rtol=1e-5, atol=1e-6)


# --- adversarial values ---------------------------------------------------------------------


def test_lsgan_values() -> None:
    ones = torch.ones(2, 1, 3, 3)
    close(lsgan_loss(ones, True), 0.0)
    close(lsgan_loss(ones, False), 1.0)
    loss = LSGANLoss(weight=2.0)
    close(loss.discriminator_loss(ones, torch.zeros_like(ones)), 0.0)
    close(loss.discriminator_loss(torch.zeros_like(ones), ones), 2.0)
    close(loss.generator_loss(torch.full((2, 1, 3, 3), 0.5)), 2.0 * 0.25)


def test_gan_values() -> None:
    zeros = torch.zeros(2, 1, 4, 4)
    close(gan_loss(zeros, True), math.log(2))
    close(gan_loss(zeros, False), math.log(2))
    close(VanillaGANLoss().discriminator_loss(zeros, zeros), 2 * math.log(2))
    logits = torch.tensor([2.0, -1.0])
    expected_real = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
    close(gan_loss(logits, True), expected_real)
    close(VanillaGANLoss(weight=3.0).generator_loss(logits), 3.0 * expected_real)


def test_gan_label_smoothing_only_touches_the_discriminator_real_target() -> None:
    zeros = torch.zeros(4)
    # With logit 0, BCE is log(2) for any target in [0, 1]; use a non-zero logit instead.
    x = torch.full((4,), 1.5)
    sig = 1 / (1 + math.exp(-1.5))
    target = 0.9
    expected = -(target * math.log(sig) + (1 - target) * math.log(1 - sig))
    loss = VanillaGANLoss(label_smoothing=0.1)
    close(loss(x, True), expected)
    close(loss(zeros, False), math.log(2))
    close(loss.generator_loss(x), -math.log(sig))


def test_hinge_values() -> None:
    x = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    close(hinge_loss(x, True), (3.0 + 1.5 + 0.5 + 0.0) / 4)
    close(hinge_loss(x, False), (0.0 + 0.5 + 1.5 + 3.0) / 4)
    loss = HingeLoss(weight=0.5)
    close(loss.discriminator_loss(x, x), 2.5)
    close(loss.generator_loss(torch.tensor([1.0, 3.0])), 0.5 * -2.0)


def test_wgan_values() -> None:
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    close(wasserstein_loss(real, True), -2.0)
    close(wasserstein_loss(fake, False), -0.5)
    loss = WGANGPLoss(weight=2.0)
    close(loss.discriminator_loss(real, fake), -2.0 + -0.5)
    close(loss.generator_loss(fake), 2.0 * 0.5)


def test_weight_scales_only_the_generator_term() -> None:
    real, fake = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    for cls in ADVERSARIAL:
        plain, heavy = cls(), cls(weight=7.0)
        torch.testing.assert_close(
            heavy.discriminator_loss(real, fake), plain.discriminator_loss(real, fake)
        )
        torch.testing.assert_close(heavy.generator_loss(fake), 7.0 * plain.generator_loss(fake))


@pytest.mark.parametrize("cls", ADVERSARIAL)
def test_adversarial_gradients_flow(cls: type[AdversarialLoss]) -> None:
    logits = torch.randn(2, 1, 5, 5, requires_grad=True)
    loss = cls()
    for value in (loss(logits, True), loss(logits, False), loss.generator_loss(logits)):
        (grad,) = torch.autograd.grad(value, logits)
        assert grad.abs().sum() > 0


# --- gradient penalty -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["mixed", "real", "fake"])
def test_gradient_penalty_of_a_linear_critic(mode: str) -> None:
    torch.manual_seed(0)
    w = torch.randn(3, 4, 4)
    critic = LinearCritic(w)
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    expected = (w.norm().item() - 1.0) ** 2
    close(gradient_penalty(critic, real, fake, mode=mode), expected)
    loss = WGANGPLoss(gp_weight=10.0, gp_mode=mode)
    close(loss.penalty(critic, real, fake), 10.0 * expected)
    expected_c2 = (w.norm().item() - 2.0) ** 2
    close(gradient_penalty(critic, real, fake, constant=2.0, mode=mode), expected_c2)


def test_gradient_penalty_uses_per_sample_norms() -> None:
    real = torch.randn(4, 2, 3, 3)
    norms = real.flatten(1).norm(dim=1)
    expected = ((norms - 1.0) ** 2).mean().item()
    close(gradient_penalty(HalfSquareCritic(), real, real.clone(), mode="real"), expected)
    # Interpolating an image with itself gives the image back, whatever eps is drawn.
    close(gradient_penalty(HalfSquareCritic(), real, real.clone(), mode="mixed"), expected)


def test_penalty_backpropagates_into_the_discriminator_only() -> None:
    critic = LinearCritic(torch.full((1, 2, 2), 2.0))
    real = torch.randn(3, 1, 2, 2)
    fake = torch.randn(3, 1, 2, 2, requires_grad=True)
    penalty = WGANGPLoss().penalty(critic, real, fake)
    assert penalty is not None
    penalty.backward()
    # ||w|| = 4, so d/dw 10 * (||w|| - 1)^2 = 10 * 2 * 3 * w / 4 = 30 everywhere.
    torch.testing.assert_close(critic.weight.grad, torch.full((1, 2, 2), 30.0))
    assert fake.grad is None


def test_penalty_works_under_no_grad_and_is_off_at_zero_weight() -> None:
    critic = LinearCritic(torch.ones(1, 2, 2))
    real, fake = torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2)
    with torch.no_grad():
        close(WGANGPLoss(gp_weight=1.0).penalty(critic, real, fake), 1.0)
    assert WGANGPLoss(gp_weight=0.0).penalty(critic, real, fake) is None


@pytest.mark.parametrize("cls", [VanillaGANLoss, LSGANLoss, HingeLoss])
def test_penalty_is_none_without_gradient_penalty(cls: type[AdversarialLoss]) -> None:
    critic = LinearCritic(torch.ones(1, 2, 2))
    assert cls().penalty(critic, torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2)) is None


# --- reconstruction -------------------------------------------------------------------------


def test_reconstruction_values_and_defaults() -> None:
    out = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # |diff| = 1, 0, 2, 3
    close(l1_loss(out, target), 1.5)
    close(l1_loss(out, target, reduction="sum"), 6.0)
    assert (L1Loss().weight, CycleLoss().weight, IdentityLoss().weight) == (1.0, 10.0, 5.0)
    close(L1Loss()(out, target), 1.5)
    close(CycleLoss()(out, target), 15.0)
    close(IdentityLoss()(out, target), 7.5)
    close(L1Loss(weight=100.0, reduction="sum")(out, target), 600.0)
    close(CycleLoss(weight=2)(out, target), 3.0)


@pytest.mark.parametrize("cls", PAIR)
def test_pair_loss_gradients_flow(cls: type[PairLoss]) -> None:
    out = torch.randn(2, 3, 4, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(cls()(out, torch.randn(2, 3, 4, 4)), out)
    assert grad.abs().sum() > 0


def test_base_pair_loss_needs_a_distance() -> None:
    with pytest.raises(NotImplementedError):
        PairLoss(weight=1.0)(torch.zeros(2), torch.zeros(2))


# --- boundary errors ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", PAIR)
def test_mismatched_shapes_name_both_shapes(cls: type[PairLoss]) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        cls()(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 4, 4))
    assert "(2, 3, 8, 8)" in str(info.value) and "(2, 3, 4, 4)" in str(info.value)


def test_pair_inputs_must_be_floating() -> None:
    with pytest.raises(InvalidArgumentError, match=r"torch\.int64"):
        L1Loss()(torch.zeros(2, dtype=torch.long), torch.zeros(2))


def test_gradient_penalty_mismatched_shapes() -> None:
    critic = LinearCritic(torch.ones(1, 2, 2))
    with pytest.raises(InvalidArgumentError) as info:
        gradient_penalty(critic, torch.zeros(2, 1, 2, 2), torch.zeros(3, 1, 2, 2))
    assert "(2, 1, 2, 2)" in str(info.value) and "(3, 1, 2, 2)" in str(info.value)
    with pytest.raises(InvalidArgumentError, match="gp_mode"):
        gradient_penalty(critic, torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2), mode="both")


@pytest.mark.parametrize("cls", ADVERSARIAL + PAIR)
@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "1"])
def test_bad_weight_raises(cls: type[nn.Module], bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="weight"):
        cls(weight=bad)


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (WGANGPLoss, {"gp_weight": -10.0}, "gp_weight"),
        (WGANGPLoss, {"gp_constant": -1.0}, "gp_constant"),
        (WGANGPLoss, {"gp_mode": "interpolated"}, "gp_mode"),
        (VanillaGANLoss, {"label_smoothing": 1.0}, "label_smoothing"),
        (VanillaGANLoss, {"label_smoothing": -0.1}, "label_smoothing"),
        (L1Loss, {"reduction": "none"}, "reduction"),
    ],
)
def test_bad_arguments_raise(cls: type[nn.Module], kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        cls(**kwargs)


def test_bad_logits_raise() -> None:
    with pytest.raises(InvalidArgumentError, match="floating"):
        LSGANLoss()(torch.ones(2, dtype=torch.long), True)
    with pytest.raises(InvalidArgumentError, match="target_is_real"):
        gan_loss(torch.zeros(2), 1)  # type: ignore[arg-type]
