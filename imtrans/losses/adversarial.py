"""Adversarial losses: how discriminator logits become discriminator and generator objectives.

Each loss is a pure function on logits plus a thin :class:`AdversarialLoss` module. Logits may
be a patch map of any shape; every loss averages over all of its elements. Nothing here reads
tensor values on the host, so a training step never waits on the device. The constant targets
of the GAN and LSGAN losses are made once per logits layout and reused (see :func:`_target`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from imtrans.errors import InvalidArgumentError
from imtrans.losses.reconstruction import check_weight

__all__ = [
    "AdversarialLoss",
    "GPMode",
    "HingeLoss",
    "LSGANLoss",
    "VanillaGANLoss",
    "WGANGPLoss",
    "gan_loss",
    "gradient_penalty",
    "hinge_loss",
    "lsgan_loss",
    "wasserstein_loss",
]

#: Where the gradient penalty is evaluated: on interpolates, real images or fake images.
GPMode = Literal["mixed", "real", "fake"]
_GP_MODES: tuple[str, ...] = get_args(GPMode)


def _check_logits(logits: Tensor, target_is_real: bool) -> None:
    # Metadata only: reading values would force a device sync on every training step.
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        kind = logits.dtype if isinstance(logits, Tensor) else type(logits).__name__
        raise InvalidArgumentError(f"logits must be a floating-point tensor, got {kind}")
    if not isinstance(target_is_real, bool):
        raise InvalidArgumentError(f"target_is_real must be a bool, got {target_is_real!r}")


#: How many targets :func:`_target` keeps; a run uses a few shapes (one per discriminator
#: output and batch size, the last batch of an epoch perhaps), so more only holds memory.
_TARGET_CACHE_SIZE = 16
# (shape, strides, dtype, device, value) -> target, least recently used first.
_TARGETS: OrderedDict[tuple[object, ...], Tensor] = OrderedDict()
_TARGETS_LOCK = threading.Lock()


def _target(logits: Tensor, value: float) -> Tensor:
    """A tensor like ``logits`` filled with ``value``: exactly ``torch.full_like(logits, value)``.

    Outside compilation the target is cached per layout and value, so a training step allocates
    and fills none after the first. It never requires grad and the losses only read it, so
    sharing one between calls is safe. Under ``torch.compile`` the target is made as usual: the
    compiler folds the constant, and a dict lookup would cost guards or a graph break. Tensor
    subclasses (fake tensors while tracing...) and CUDA graph capture bypass the cache too: a
    cached tensor must be a plain one, and an evicted target must not be memory a graph reads.
    """
    if (
        torch.compiler.is_compiling()
        or type(logits) is not Tensor
        or (logits.is_cuda and torch.cuda.is_current_stream_capturing())
    ):
        return torch.full_like(logits, value)
    # The strides are part of the key: full_like keeps the memory format (channels_last), and
    # the loss must see the same layout as without the cache to sum in the same order.
    key = (tuple(logits.shape), logits.stride(), logits.dtype, logits.device, value)
    with _TARGETS_LOCK:
        target = _TARGETS.get(key)
        if target is not None:
            _TARGETS.move_to_end(key)
            return target
    # A target made under inference_mode would be an inference tensor, which a later training
    # step could not save for backward; made outside it, it serves both.
    with torch.inference_mode(False):
        target = torch.full_like(logits, value)
    with _TARGETS_LOCK:
        _TARGETS[key] = target
        _TARGETS.move_to_end(key)
        while len(_TARGETS) > _TARGET_CACHE_SIZE:
            _TARGETS.popitem(last=False)
    return target


def _check_smoothing(label_smoothing: float) -> float:
    smoothing = check_weight("label_smoothing", label_smoothing)
    if smoothing >= 1.0:
        raise InvalidArgumentError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    return smoothing


def _check_mode(mode: str) -> None:
    if mode not in _GP_MODES:
        names = ", ".join(map(repr, _GP_MODES))
        raise InvalidArgumentError(f"gp_mode must be one of {names}, got {mode!r}")


def gan_loss(logits: Tensor, target_is_real: bool, *, label_smoothing: float = 0.0) -> Tensor:
    """Binary cross-entropy with logits against 1 (real, less ``label_smoothing``) or 0 (fake).

    Args:
        logits: Discriminator logits, any shape.
        target_is_real: Compare against the real target or against 0.
        label_smoothing: One-sided smoothing in [0, 1): the real target is ``1 - smoothing``.

    Returns:
        The mean loss, a scalar tensor.

    Raises:
        InvalidArgumentError: ``logits`` is not a floating tensor or the smoothing is invalid.

    Example:
        >>> gan_loss(torch.zeros(2, 1, 4, 4), True)  # log(2)
        tensor(0.6931)
    """
    _check_logits(logits, target_is_real)
    real_label = 1.0 - _check_smoothing(label_smoothing)
    target = _target(logits, real_label if target_is_real else 0.0)
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


def lsgan_loss(logits: Tensor, target_is_real: bool) -> Tensor:
    """Least-squares GAN loss: mean squared error against 1 (real) or 0 (fake).

    Args:
        logits: Discriminator outputs, any shape.
        target_is_real: Compare against 1 or 0.

    Returns:
        The mean loss, a scalar tensor.

    Raises:
        InvalidArgumentError: ``logits`` is not a floating-point tensor.

    Example:
        >>> lsgan_loss(torch.ones(2, 1, 4, 4), False)
        tensor(1.)
    """
    _check_logits(logits, target_is_real)
    return nn.functional.mse_loss(logits, _target(logits, 1.0 if target_is_real else 0.0))


def hinge_loss(logits: Tensor, target_is_real: bool) -> Tensor:
    """One side of the hinge discriminator loss: mean ``relu(1 - x)`` (real) or ``relu(1 + x)``.

    Args:
        logits: Discriminator outputs, any shape.
        target_is_real: Whether ``logits`` were computed on real images.

    Returns:
        The mean loss, a scalar tensor.

    Raises:
        InvalidArgumentError: ``logits`` is not a floating-point tensor.

    Example:
        >>> hinge_loss(torch.tensor([2.0, 0.0]), True)
        tensor(0.5000)
    """
    _check_logits(logits, target_is_real)
    margin = 1.0 - logits if target_is_real else 1.0 + logits
    return torch.relu(margin).mean()


def wasserstein_loss(logits: Tensor, target_is_real: bool) -> Tensor:
    """One side of the WGAN critic loss, ``-mean(x)`` (real) or ``mean(x)`` (fake).

    The generator loss of both WGAN-GP and hinge GANs is ``wasserstein_loss(fake, True)``.

    Args:
        logits: Critic scores, any shape.
        target_is_real: Whether the scores should be pushed up (real) or down (fake).

    Returns:
        A scalar tensor.

    Raises:
        InvalidArgumentError: ``logits`` is not a floating-point tensor.

    Example:
        >>> wasserstein_loss(torch.tensor([1.0, 3.0]), True)
        tensor(-2.)
    """
    _check_logits(logits, target_is_real)
    return -logits.mean() if target_is_real else logits.mean()


def gradient_penalty(
    discriminator: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    *,
    constant: float = 1.0,
    mode: GPMode = "mixed",
) -> Tensor:
    """The unweighted WGAN-GP penalty ``mean((||grad_x D(x)||_2 - constant) ** 2)``.

    Per ``mode``, ``x`` is ``eps * real + (1 - eps) * fake`` with one ``eps ~ U(0, 1)`` per
    sample (``"mixed"``), ``real`` or ``fake``; both inputs are detached, and the gradient is
    built with ``create_graph=True``, so the result trains the discriminator only.

    Args:
        discriminator: Maps a batch to scores of any shape (a patch map is summed per sample).
        real: Real discriminator inputs, ``(B, ...)``.
        fake: Generated discriminator inputs, same shape, device and floating dtype.
        constant: The target gradient norm.
        mode: ``"mixed"``, ``"real"`` or ``"fake"``.

    Returns:
        A scalar tensor.

    Raises:
        InvalidArgumentError: the inputs differ in shape or device, are not floating (B, ...)
            tensors, or ``mode`` is unknown.

    Example:
        >>> d = torch.nn.Conv2d(3, 1, 3)
        >>> gradient_penalty(d, torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)).shape
        torch.Size([])
    """
    _check_mode(mode)
    if real.shape != fake.shape or real.device != fake.device or real.dim() < 2:
        raise InvalidArgumentError(
            f"real and fake must be (B, ...) batches of one shape and device, got real "
            f"{tuple(real.shape)} on {real.device} and fake {tuple(fake.shape)} on {fake.device}"
        )
    if not (real.is_floating_point() and fake.is_floating_point()):
        raise InvalidArgumentError(f"real and fake must be floating, got {real.dtype} {fake.dtype}")
    if mode == "mixed":
        # One eps per sample, broadcast over the other dimensions.
        eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        eps = torch.rand(eps_shape, dtype=real.dtype, device=real.device)
        points = eps * real.detach() + (1.0 - eps) * fake.detach()
    else:
        points = (real if mode == "real" else fake).detach()
    # The penalty needs autograd even when a caller evaluates it under no_grad.
    with torch.enable_grad():
        points.requires_grad_(True)
        (grad,) = torch.autograd.grad(discriminator(points).sum(), points, create_graph=True)
        # The epsilon keeps the norm's derivative finite where the gradient vanishes.
        norms = torch.sqrt(grad.flatten(1).pow(2).sum(dim=1) + 1e-12)
        return ((norms - constant) ** 2).mean()


class AdversarialLoss(nn.Module):
    """Base class: a per-side loss on discriminator logits and the objectives built from it.

    Subclasses implement :meth:`forward` and may override :meth:`generator_loss` and
    :meth:`penalty`.

    Args:
        weight: The adversarial term's weight in the generator objective (finite, >= 0); it
            does not scale the discriminator loss.

    Raises:
        InvalidArgumentError: ``weight`` is negative or not finite.

    Example:
        >>> LSGANLoss().discriminator_loss(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
        tensor(0.)
    """

    def __init__(self, *, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = check_weight("weight", weight)

    def forward(self, logits: Tensor, target_is_real: bool) -> Tensor:
        """The discriminator's loss on one side (scalar), averaged over all elements."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """``forward(real, True) + forward(fake, False)``, unhalved (the trainer halves it)."""
        return self.forward(real_logits, True) + self.forward(fake_logits, False)

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        """The generator's weighted adversarial term, ``weight * forward(fake, True)``."""
        return self.weight * self.forward(fake_logits, True)

    def penalty(self, discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        """A regulariser to add to the discriminator objective, or None (the default)."""
        return None

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


class VanillaGANLoss(AdversarialLoss):
    """Binary cross-entropy on logits against 1/0 targets (the pix2pix default).

    Args:
        weight: The adversarial term's weight in the generator objective.
        label_smoothing: One-sided smoothing in [0, 1) of the discriminator's real target; the
            generator still aims at 1.

    Raises:
        InvalidArgumentError: ``weight`` is negative or ``label_smoothing`` is outside [0, 1).

    Example:
        >>> VanillaGANLoss()(torch.zeros(1, 1, 30, 30), True)
        tensor(0.6931)
    """

    def __init__(self, *, weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__(weight=weight)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def forward(self, logits: Tensor, target_is_real: bool) -> Tensor:
        return gan_loss(logits, target_is_real, label_smoothing=self.label_smoothing)

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        # Smoothing regularises the discriminator only.
        return self.weight * gan_loss(fake_logits, True)


class LSGANLoss(AdversarialLoss):
    """Least-squares (MSE) loss against 1/0 targets (the CycleGAN default).

    Args:
        weight: The adversarial term's weight in the generator objective.

    Example:
        >>> LSGANLoss().generator_loss(torch.zeros(1, 1, 30, 30))
        tensor(1.)
    """

    def forward(self, logits: Tensor, target_is_real: bool) -> Tensor:
        return lsgan_loss(logits, target_is_real)


class HingeLoss(AdversarialLoss):
    """Hinge loss: relu(1 - real) + relu(1 + fake) for D, -mean(fake) for G.

    Args:
        weight: The adversarial term's weight in the generator objective.

    Example:
        >>> HingeLoss().discriminator_loss(torch.tensor([0.5]), torch.tensor([0.5]))
        tensor(2.)
    """

    def forward(self, logits: Tensor, target_is_real: bool) -> Tensor:
        return hinge_loss(logits, target_is_real)

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        # The generator maximises the raw score: no hinge on its side.
        return self.weight * wasserstein_loss(fake_logits, True)


class WGANGPLoss(AdversarialLoss):
    """Wasserstein loss with a gradient penalty on the critic (WGAN-GP).

    D: ``-mean(real) + mean(fake)``; G: ``-mean(fake)``. :meth:`penalty` returns
    ``gp_weight * gradient_penalty(...)`` for the trainer to add to the critic objective.

    Args:
        weight: The adversarial term's weight in the generator objective.
        gp_weight: The penalty's weight (lambda); 0 turns the penalty off.
        gp_constant: The target gradient norm.
        gp_mode: Where the gradient is taken: ``"mixed"`` (interpolates), ``"real"``, ``"fake"``.

    Raises:
        InvalidArgumentError: a weight is negative or not finite, or ``gp_mode`` is unknown.

    Example:
        >>> WGANGPLoss().discriminator_loss(torch.tensor([2.0]), torch.tensor([-1.0]))
        tensor(-3.)
    """

    def __init__(
        self,
        *,
        weight: float = 1.0,
        gp_weight: float = 10.0,
        gp_constant: float = 1.0,
        gp_mode: GPMode = "mixed",
    ) -> None:
        super().__init__(weight=weight)
        self.gp_weight = check_weight("gp_weight", gp_weight)
        self.gp_constant = check_weight("gp_constant", gp_constant)
        _check_mode(gp_mode)
        self.gp_mode: GPMode = gp_mode

    def forward(self, logits: Tensor, target_is_real: bool) -> Tensor:
        return wasserstein_loss(logits, target_is_real)

    def penalty(self, discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        """``gp_weight * gradient_penalty(discriminator, real, fake)``; None if gp_weight is 0.

        Raises:
            InvalidArgumentError: ``real`` and ``fake`` are not compatible batches.
        """
        if self.gp_weight == 0.0:
            return None
        return self.gp_weight * gradient_penalty(
            discriminator, real, fake, constant=self.gp_constant, mode=self.gp_mode
        )

    def extra_repr(self) -> str:
        return f"weight={self.weight}, gp_weight={self.gp_weight}, gp_mode={self.gp_mode!r}"
