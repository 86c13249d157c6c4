"""Reconstruction losses: weighted distances between a generated image and a target image.

pix2pix compares its output with the paired target (``l1``); CycleGAN compares an image with
its round-trip reconstruction (``cycle``) and a generator's output on an image of its own
output domain with that image (``identity``). All three are the same weighted L1 distance and
differ only by their default weight, so they share :class:`PairLoss`.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

from torch import Tensor, nn

from imtrans.errors import InvalidArgumentError

__all__ = [
    "CycleLoss",
    "IdentityLoss",
    "L1Loss",
    "PairLoss",
    "Reduction",
    "check_weight",
    "l1_loss",
]

#: How a pair loss turns the element-wise distance into one number.
Reduction = Literal["mean", "sum"]
_REDUCTIONS: tuple[str, ...] = get_args(Reduction)


def check_weight(name: str, value: float) -> float:
    """Return ``value`` as a float after checking that it is a finite, non-negative number.

    Args:
        name: The argument's name, shown in the error message.
        value: The value given.

    Returns:
        ``value`` converted to ``float``.

    Raises:
        InvalidArgumentError: ``value`` is not a real number, is negative, NaN or infinite.

    Example:
        >>> check_weight("weight", 10)
        10.0
    """
    # bool is an int subclass, but ``weight=True`` is always a mistake in a recipe.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"{name} must be a number >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise InvalidArgumentError(
            f"reduction must be one of {', '.join(map(repr, _REDUCTIONS))}, got {reduction!r}"
        )


def _check_pair(output: Tensor, target: Tensor) -> None:
    # Metadata only: reading values would force a device sync on every training step.
    if not isinstance(output, Tensor) or not isinstance(target, Tensor):
        raise InvalidArgumentError(
            f"output and target must be tensors, got {type(output).__name__} "
            f"and {type(target).__name__}"
        )
    if output.shape != target.shape:
        raise InvalidArgumentError(
            f"output and target must have the same shape, got output {tuple(output.shape)} "
            f"and target {tuple(target.shape)}"
        )
    if output.device != target.device:
        raise InvalidArgumentError(
            f"output and target must be on the same device, got output on {output.device} "
            f"and target on {target.device}"
        )
    if not (output.is_floating_point() and target.is_floating_point()):
        raise InvalidArgumentError(
            f"output and target must have a floating dtype, got output {output.dtype} "
            f"and target {target.dtype}"
        )


def _reduce(distance: Tensor, reduction: str) -> Tensor:
    return distance.sum() if reduction == "sum" else distance.mean()


def l1_loss(output: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Unweighted L1 distance between two images of the same shape.

    Args:
        output: A generated image batch, any shape.
        target: The image batch it should match, same shape, device and floating dtype.
        reduction: ``"mean"`` (mean absolute error) or ``"sum"``.

    Returns:
        A scalar tensor.

    Raises:
        InvalidArgumentError: shapes or devices differ, a dtype is not floating point, or
            ``reduction`` is unknown.

    Example:
        >>> import torch
        >>> l1_loss(torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2))
        tensor(1.)
    """
    _check_reduction(reduction)
    _check_pair(output, target)
    return _reduce((output - target).abs(), reduction)


class PairLoss(nn.Module):
    """A weighted, reduced element-wise distance between an output and a target image.

    Subclasses implement :meth:`distance`; :meth:`forward` checks the inputs, reduces the
    distance and applies the weight.

    Args:
        weight: The term's weight in the generator objective (finite, >= 0).
        reduction: ``"mean"`` or ``"sum"`` over all elements.

    Raises:
        InvalidArgumentError: ``weight`` is negative or not finite, or ``reduction`` is unknown.

    Example:
        >>> import torch
        >>> class L2(PairLoss):
        ...     def distance(self, output, target):
        ...         return (output - target) ** 2
        >>> L2(weight=2.0)(torch.zeros(2, 2), torch.ones(2, 2))
        tensor(2.)
    """

    def __init__(self, *, weight: float, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.weight = check_weight("weight", weight)
        _check_reduction(reduction)
        self.reduction: Reduction = reduction

    def distance(self, output: Tensor, target: Tensor) -> Tensor:
        """The element-wise distance between ``output`` and ``target`` (not reduced).

        Args:
            output: The generated images.
            target: The images they should match (already checked to be compatible).

        Returns:
            A tensor of the inputs' shape.

        Raises:
            NotImplementedError: in the base class.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement distance()")

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        """Return ``weight`` times the reduced distance between ``output`` and ``target``.

        Args:
            output: The generated images.
            target: The images they should match: same shape, device and floating dtype.

        Returns:
            A scalar tensor.

        Raises:
            InvalidArgumentError: the shapes or devices differ, or a dtype is not floating.
        """
        _check_pair(output, target)
        return self.weight * _reduce(self.distance(output, target), self.reduction)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, reduction={self.reduction!r}"


class L1Loss(PairLoss):
    """Weighted L1 distance between a generated image and its paired target (pix2pix).

    Args:
        weight: The term's weight in the generator objective (pix2pix uses 100 next to a
            weight-1 adversarial term).
        reduction: ``"mean"`` (mean absolute error) or ``"sum"``.

    Raises:
        InvalidArgumentError: ``weight`` is negative or not finite, or ``reduction`` is unknown.

    Example:
        >>> import torch
        >>> L1Loss(weight=100.0)(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5))
        tensor(50.)
    """

    def __init__(self, *, weight: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__(weight=weight, reduction=reduction)

    def distance(self, output: Tensor, target: Tensor) -> Tensor:
        """The element-wise absolute difference."""
        return (output - target).abs()


class CycleLoss(L1Loss):
    """Cycle-consistency L1 between an image and its reconstruction G_BA(G_AB(a)) (CycleGAN).

    The default weight 10 is CycleGAN's lambda_A = lambda_B = 10; use one instance per
    direction, or one for both if the two lambdas are equal.

    Args:
        weight: The term's weight in the generator objective.
        reduction: ``"mean"`` or ``"sum"``.

    Raises:
        InvalidArgumentError: ``weight`` is negative or not finite, or ``reduction`` is unknown.

    Example:
        >>> import torch
        >>> real_a = torch.zeros(1, 3, 4, 4)
        >>> CycleLoss()(real_a + 0.1, real_a)  # reconstruction, original
        tensor(1.0000)
    """

    def __init__(self, *, weight: float = 10.0, reduction: Reduction = "mean") -> None:
        super().__init__(weight=weight, reduction=reduction)


class IdentityLoss(L1Loss):
    """Identity-mapping L1 between G_AB(b) and b, keeping colours stable (CycleGAN).

    The default weight 5 is CycleGAN's ``lambda_identity = 0.5`` times its cycle weight 10.

    Args:
        weight: The term's weight in the generator objective.
        reduction: ``"mean"`` or ``"sum"``.

    Raises:
        InvalidArgumentError: ``weight`` is negative or not finite, or ``reduction`` is unknown.

    Example:
        >>> import torch
        >>> real_b = torch.zeros(1, 3, 4, 4)
        >>> IdentityLoss()(real_b + 0.5, real_b)  # G_AB(b), b
        tensor(2.5000)
    """

    def __init__(self, *, weight: float = 5.0, reduction: Reduction = "mean") -> None:
        super().__init__(weight=weight, reduction=reduction)
