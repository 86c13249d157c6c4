"""PatchNCE (Park et al., ECCV 2020): each patch of G(x) should match the patch of x at the same
place better than the other patches of x, in the generator encoder's feature space."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from imtrans import InvalidArgumentError
from imtrans.losses import GeneratorFeatureLoss, check_weight
from imtrans.nn import feature_channels, generator_features
from imtrans_cut.head import PatchSampleHead

__all__ = ["PatchNCELoss", "patch_nce_loss"]


def patch_nce_loss(query: Tensor, key: Tensor, *, temperature: float = 0.07,
                   negatives_from_minibatch: bool = False) -> Tensor:
    """InfoNCE between query patches and the key patches at the same positions.

    For query patch i the positive is key patch i and the negatives are the other key patches
    of the same image (of the whole batch with ``negatives_from_minibatch``); the logits are
    cosine similarities over ``temperature``, and the loss is the cross-entropy with the
    positive at index 0, averaged over all patches. The keys are detached: gradients flow
    through the queries only, as in the official code.

    Args:
        query: (N, P, C) unit vectors, the patches of the output.
        key: (N, P, C) unit vectors, the patches of the source at the same positions.
        temperature: Divides the similarities (0.07 in CUT).
        negatives_from_minibatch: Draw negatives from every image of the batch.

    Returns:
        A scalar tensor.

    Raises:
        InvalidArgumentError: shapes differ or are not (N, P, C).

    Example:
        >>> keys = torch.eye(4).unsqueeze(0)  # four orthogonal patches
        >>> round(patch_nce_loss(keys, keys, temperature=1.0).item(), 4)  # log(1 + 3/e)
        0.7436
    """
    if query.shape != key.shape or query.dim() != 3:
        raise InvalidArgumentError(f"query and key must be (N, P, C) of one shape, got "
                                   f"{tuple(query.shape)} and {tuple(key.shape)}")
    key = key.detach()
    n, p, c = query.shape
    positive = (query * key).sum(dim=2).reshape(-1, 1)  # (N*P, 1)
    if negatives_from_minibatch:
        query, key = query.reshape(1, n * p, c), key.reshape(1, n * p, c)
    count = query.shape[1]
    negative = torch.bmm(query, key.transpose(1, 2))  # (groups, count, count)
    # The diagonal is the positive again: pushed to -10 (before the temperature, as the
    # official code does) so that it counts for nothing among the negatives.
    diagonal = torch.eye(count, dtype=torch.bool, device=query.device)
    negative = negative.masked_fill(diagonal, -10.0).reshape(-1, count)
    logits = torch.cat([positive, negative], dim=1) / temperature
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=query.device)
    return nn.functional.cross_entropy(logits, target)


class PatchNCELoss(GeneratorFeatureLoss):
    """PatchNCE loss of CUT over generator encoder layers, with its own MLP head.

    Both images are encoded by the generator's first layers; at each of ``layers``,
    ``num_patches`` positions are drawn from the source's features, the same positions are
    taken from the output's, and a :class:`PatchSampleHead` projects them. The loss is
    :func:`patch_nce_loss` averaged over the layers, times ``weight`` (CUT's lambda_NCE). The
    source pass needs no gradient (its patches are the detached keys), so it runs without one.

    The head is built by :meth:`bind` from the generator's channel counts and trains with its
    own Adam, which the trainer creates (:class:`imtrans.trainers.TrainableTerms`).

    Args:
        weight: lambda_NCE: 1 for CUT, 10 for FastCUT.
        layers: Indices into the generator's flat layer sequence (``feature_layers``); the
            default is CUT's for the ResNet generator.
        num_patches: Patches drawn per layer and image.
        head_channels: Width of the head's two linear layers.
        temperature: Temperature of the softmax (CUT's nce_T).
        negatives_from_minibatch: Take negatives from every image of the batch, not only
            from the patch's own image (CUT: False; True for single-image translation).
        init_gain: Standard deviation of the head's initial weights.

    Raises:
        InvalidArgumentError: an argument is out of range.

    Example:
        >>> from imtrans.nn import resnet
        >>> gen = resnet(ngf=8, n_blocks=6)
        >>> loss = PatchNCELoss(num_patches=16)
        >>> loss.bind(gen)
        >>> x = torch.rand(1, 3, 32, 32) * 2 - 1
        >>> loss(gen, x, gen(x)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        weight: float = 1.0,
        layers: tuple[int, ...] = (0, 4, 8, 12, 16),
        num_patches: int = 256,
        head_channels: int = 256,
        temperature: float = 0.07,
        negatives_from_minibatch: bool = False,
        init_gain: float = 0.02,
    ) -> None:
        super().__init__(weight=weight)
        if not layers or any(isinstance(i, bool) or not isinstance(i, int) or i < 0
                             for i in layers):
            raise InvalidArgumentError(f"layers must be non-negative layer indices, got "
                                       f"{list(layers)!r}")
        for name, value in (("num_patches", num_patches), ("head_channels", head_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
        if check_weight("temperature", temperature) == 0 or check_weight("init_gain",
                                                                         init_gain) == 0:
            raise InvalidArgumentError(f"temperature and init_gain must be > 0, got "
                                       f"{temperature!r} and {init_gain!r}")
        self.layers = tuple(layers)
        self.num_patches = num_patches
        self.head_channels = head_channels
        self.temperature = float(temperature)
        self.negatives_from_minibatch = negatives_from_minibatch
        self.init_gain = float(init_gain)
        self.head: PatchSampleHead | None = None

    def bind(self, generator: nn.Module) -> None:
        """Build the head for ``generator``'s feature channels, on its device.

        Raises:
            InvalidArgumentError: the generator exposes no flat layer sequence (a U-Net), or
                a layer index is out of its range.
        """
        channels = feature_channels(generator, self.layers)
        device = next(iter(generator.parameters()), torch.empty(0)).device
        with torch.device(device):
            self.head = PatchSampleHead(channels, out_channels=self.head_channels,
                                        init_gain=self.init_gain)

    def forward(self, generator: nn.Module, source: Tensor, output: Tensor, *,
                flipped: bool = False) -> Tensor:
        """``weight`` x the PatchNCE loss of ``output = generator(source)``.

        Raises:
            InvalidArgumentError: called before :meth:`bind`.
        """
        if self.head is None:
            raise InvalidArgumentError("PatchNCELoss has no head yet: call bind(generator) "
                                       "first (trainers do this in setup)")
        query_features = generator_features(generator, output, self.layers)
        if flipped:  # the output came from the flipped source: flip its features back
            query_features = [f.flip(3) for f in query_features]
        with torch.no_grad():
            key_features = generator_features(generator, source, self.layers)
            keys, patch_ids = self.head(key_features, self.num_patches)
        queries, _ = self.head(query_features, self.num_patches, patch_ids)
        total = sum(patch_nce_loss(q, k, temperature=self.temperature,
                                   negatives_from_minibatch=self.negatives_from_minibatch)
                    for q, k in zip(queries, keys, strict=True))
        return self.weight * total / len(self.layers)

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, layers={list(self.layers)}, "
                f"num_patches={self.num_patches}, temperature={self.temperature}")
