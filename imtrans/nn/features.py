"""Features from inside a generator, for losses that compare images in the generator's own
feature space (PatchNCE of CUT, say).

A generator opts in by exposing its layers as one flat sequence whose composition is its
forward pass, plus its input channel count:

* ``feature_layers``: an ``nn.Sequential`` (or any indexable sequence of modules) such that
  applying its layers in order to an input is the generator's forward pass; index ``i`` names
  the output of layer ``i``. Make it a property returning the container the network already
  holds (``return self.model``): assigning the same container to a second attribute would
  register its weights twice and change the checkpoint's tensor names.
* ``in_channels``: the channel count of the input image.

The built-in ResNet generators do both (layers 0, 4, 8, 12 and 16 are CUT's choice). The U-Net
cannot: its skip connections make it a nest of blocks, not a sequence.

Example:
    >>> import torch
    >>> from imtrans.nn import generator_features, resnet
    >>> net = resnet(ngf=8, n_blocks=6)
    >>> [f.shape[1] for f in generator_features(net, torch.zeros(1, 3, 32, 32), [0, 4, 8])]
    [3, 16, 32]
    >>> feature_channels(net, [0, 4, 8])  # without computing anything on real images
    [3, 16, 32]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from imtrans.core.contracts import size_multiple
from imtrans.errors import InvalidArgumentError

__all__ = ["LayeredGenerator", "feature_channels", "feature_layers_of", "generator_features"]


@runtime_checkable
class LayeredGenerator(Protocol):
    """A generator whose forward pass is its ``feature_layers`` applied in order."""

    in_channels: int

    @property
    def feature_layers(self) -> Sequence[nn.Module]:
        """The layers, in order; their composition is the forward pass."""
        ...


def feature_layers_of(generator: nn.Module, layers: Sequence[int]) -> Sequence[nn.Module]:
    """The flat layer sequence of ``generator``, after checking that ``layers`` index into it.

    A DistributedDataParallel wrapper is looked through (its network holds the layers).

    Args:
        generator: A generator that exposes ``feature_layers`` (see the module docstring).
        layers: The layer indices a caller will ask for.

    Returns:
        The generator's layers.

    Raises:
        InvalidArgumentError: the generator exposes no flat layer sequence, ``layers`` is
            empty, or an index is out of range.
    """
    network = generator.module if isinstance(generator, DistributedDataParallel) else generator
    sequence = getattr(network, "feature_layers", None)
    if sequence is None:
        raise InvalidArgumentError(
            f"{type(network).__name__} does not expose its layers as a flat sequence "
            "(a `feature_layers` property), so features cannot be taken from inside it; "
            "use a generator that does, such as resnet_9blocks (a U-Net's skip connections "
            "make it a nest of blocks, not a sequence)")
    if not layers:
        raise InvalidArgumentError("layers must name at least one layer index, got none")
    count = len(sequence)
    bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or not
           0 <= i < count]
    if bad:
        raise InvalidArgumentError(
            f"layer index {bad[0]!r} is out of range: {type(network).__name__} has {count} "
            f"layers (0 to {count - 1})")
    return sequence


def generator_features(generator: nn.Module, x: Tensor, layers: Sequence[int]) -> list[Tensor]:
    """The outputs of ``generator``'s layers ``layers`` for the input ``x``.

    Runs the layers in order and stops after the last index asked for, so taking encoder
    features costs only the encoder. The layers run as plain modules: speed switches that wrap
    the generator's forward (bf16 autocast, compile) do not apply to this pass.

    Args:
        generator: A generator exposing ``feature_layers`` (see the module docstring).
        x: Input images, (N, in_channels, H, W).
        layers: Layer indices, in any order; the features come back in that order.

    Returns:
        One tensor per index in ``layers``.

    Raises:
        InvalidArgumentError: the generator exposes no flat layer sequence, or an index is out
            of range.
    """
    sequence = feature_layers_of(generator, layers)
    wanted = set(layers)
    found: dict[int, Tensor] = {}
    feature = x
    for index in range(max(layers) + 1):
        feature = sequence[index](feature)
        if index in wanted:
            found[index] = feature
    return [found[i] for i in layers]


def feature_channels(generator: nn.Module, layers: Sequence[int]) -> list[int]:
    """The channel count of each feature :func:`generator_features` returns for ``layers``.

    Found by one pass of a small blank image through the layers, in evaluation mode and
    without gradients, on the generator's device: the weights and the batch-norm statistics
    are untouched and each layer's training mode is restored after. A generator built on the
    ``meta`` device (``imtrans validate``) works too.

    Args:
        generator: A generator exposing ``feature_layers`` and ``in_channels``.
        layers: Layer indices.

    Returns:
        Channels per index, in the order of ``layers``.

    Raises:
        InvalidArgumentError: the generator does not follow the protocol, or an index is out
            of range.
    """
    sequence = feature_layers_of(generator, layers)
    network = generator.module if isinstance(generator, DistributedDataParallel) else generator
    in_channels = getattr(network, "in_channels", None)
    if isinstance(in_channels, bool) or not isinstance(in_channels, int):
        raise InvalidArgumentError(
            f"{type(network).__name__} exposes feature_layers but no integer `in_channels` "
            "attribute, which a feature loss needs to size itself")
    # Any size the generator takes will do: channel counts do not depend on it.
    multiple = size_multiple(network)
    size = multiple * max(1, -(-32 // multiple))
    tensor = next(itertools.chain(network.parameters(), network.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    dtype = tensor.dtype if tensor is not None and tensor.is_floating_point() else None
    modes = [(module, module.training) for module in network.modules()]
    network.eval()  # batch norm must read its statistics, not update them
    try:
        with torch.no_grad():
            feature = torch.zeros(1, in_channels, size, size, device=device, dtype=dtype)
            channels: dict[int, int] = {}
            for index in range(max(layers) + 1):
                feature = sequence[index](feature)
                channels[index] = feature.shape[1]
    finally:
        for module, mode in modes:
            module.training = mode
    return [channels[i] for i in layers]
