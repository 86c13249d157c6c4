"""Feature losses: terms that compare a generator's output with its source inside the generator.

A pair loss sees two images; a feature loss also sees the generator that made one from the
other, so it can compare them in the generator's own feature space (PatchNCE of CUT encodes
both with the generator's encoder and contrasts patches at the same place). It may own
trainable parameters, such as a projection head sized from the generator's feature channels.

How a trainer uses one (the built-in trainers and any plugin trainer alike):

1. :meth:`GeneratorFeatureLoss.bind` once, with the generator it will be applied to, before any
   optimiser is created: the loss builds its parameters on the generator's device.
2. If the loss then has trainable parameters, it gets an Adam of its own
   (:class:`imtrans.trainers.TrainableTerms`), zeroed and stepped with the generator's, and
   saved in checkpoints beside the networks.
3. Each step, ``loss(generator, source, output)`` returns the weighted term.

Trainers offer feature slots (``Trainer.feature_slots``): ``features`` in ``cyclegan`` and
``pix2pix``, so a recipe adds a term with ``[losses.nce]``, ``name = "patchnce"``,
``on = "features"``.
"""

from __future__ import annotations

from torch import Tensor, nn

from imtrans.losses.reconstruction import check_weight

__all__ = ["GeneratorFeatureLoss"]


class GeneratorFeatureLoss(nn.Module):
    """Base class of losses computed from a generator, its input and its output.

    Subclasses implement :meth:`forward` and, when they own parameters whose shapes depend on
    the generator, :meth:`bind`. Use :func:`imtrans.nn.generator_features` to take features
    from inside the generator.

    Args:
        weight: The term's weight in the generator objective (finite, >= 0).

    Raises:
        InvalidArgumentError: ``weight`` is negative or not finite.

    Example:
        >>> import torch
        >>> class OutputMean(GeneratorFeatureLoss):
        ...     def forward(self, generator, source, output, *, flipped=False):
        ...         return self.weight * output.mean()
        >>> OutputMean(weight=2.0)(None, torch.zeros(1), torch.ones(1))
        tensor(2.)
    """

    def __init__(self, *, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = check_weight("weight", weight)

    def bind(self, generator: nn.Module) -> None:
        """Prepare for ``generator``: build parameters sized from it, on its device.

        Called once by the trainer, before the optimisers are created; the default does
        nothing. A loss applied to several generators gets one copy per generator, each bound
        to its own.

        Args:
            generator: The generator this loss will be applied to (possibly on ``meta``, when
                ``imtrans validate`` counts parameters).

        Raises:
            InvalidArgumentError: the generator cannot serve this loss (it exposes no
                features, say).
        """

    def forward(self, generator: nn.Module, source: Tensor, output: Tensor, *,
                flipped: bool = False) -> Tensor:
        """The weighted loss of ``output = generator(source)``, a scalar tensor.

        Args:
            generator: The generator that made ``output`` (the one :meth:`bind` received).
            source: Its input images, (N, C_in, H, W).
            output: Its output images, (N, C_out, H, W).
            flipped: ``output`` was made from ``source`` flipped left to right (flip
                equivariance): compare it with ``source`` after flipping it back.

        Returns:
            A scalar tensor, already multiplied by ``weight``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def extra_repr(self) -> str:
        return f"weight={self.weight}"
