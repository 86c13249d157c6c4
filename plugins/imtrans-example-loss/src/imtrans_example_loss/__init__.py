"""An example imtrans plugin: two reconstruction losses built on kornia.

``charbonnier``: a smooth L1, sqrt((x - y)^2 + eps^2) - eps: L1 for large differences,
differentiable at 0.
``ssim``: 1 - SSIM, a structural loss, as a per-pixel distance map.

Both subclass :class:`imtrans.losses.PairLoss`, so they take ``weight`` and ``reduction``
like the built-in ``l1`` and fit any slot that compares two images.
"""

from __future__ import annotations

from kornia.losses import charbonnier_loss, ssim_loss
from torch import Tensor

import imtrans
from imtrans.losses import PairLoss, Reduction

__all__ = ["CharbonnierLoss", "SSIMLoss", "register_losses"]


class CharbonnierLoss(PairLoss):
    """Charbonnier (smooth L1) distance between an output and its target (kornia).

    Args:
        weight: The term's weight in the generator objective.
        eps: Where the loss turns from quadratic to linear (images are in [-1, 1]).
        reduction: ``"mean"`` or ``"sum"``.

    Example:
        >>> import torch
        >>> CharbonnierLoss()(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
        tensor(0.)
    """

    def __init__(
        self, *, weight: float = 1.0, eps: float = 1e-3, reduction: Reduction = "mean"
    ) -> None:
        super().__init__(weight=weight, reduction=reduction)
        if not eps > 0:
            raise imtrans.InvalidArgumentError(f"eps must be > 0, got {eps}")
        self.eps = eps

    def distance(self, output: Tensor, target: Tensor) -> Tensor:
        """Element-wise sqrt((output - target)^2 + eps^2) - eps."""
        # kornia's Charbonnier has a fixed scale of 1 (sqrt(d^2 + 1) - 1); rescaling the inputs
        # by 1/eps and the result by eps gives the form with a small, chosen eps.
        return self.eps * charbonnier_loss(output / self.eps, target / self.eps, reduction="none")


class SSIMLoss(PairLoss):
    """Structural dissimilarity (1 - SSIM) / 2 between an output and its target (kornia).

    Images are expected in [-1, 1], the range imtrans generators produce.

    Args:
        weight: The term's weight in the generator objective.
        window_size: Side of the Gaussian window, odd.
        reduction: ``"mean"`` or ``"sum"``.
    """

    def __init__(
        self, *, weight: float = 1.0, window_size: int = 11, reduction: Reduction = "mean"
    ) -> None:
        super().__init__(weight=weight, reduction=reduction)
        if window_size < 1 or window_size % 2 == 0:
            raise imtrans.InvalidArgumentError(
                f"window_size must be a positive odd number, got {window_size}"
            )
        self.window_size = window_size

    def distance(self, output: Tensor, target: Tensor) -> Tensor:
        """Per-pixel (1 - SSIM) / 2 of the images mapped from [-1, 1] to [0, 1]."""
        return ssim_loss((output + 1) / 2, (target + 1) / 2, self.window_size,
                         max_val=1.0, reduction="none")


@imtrans.hookimpl
def register_losses(register):
    """Add the two losses to imtrans' loss registry."""
    register("charbonnier", CharbonnierLoss)
    register("ssim", SSIMLoss)
