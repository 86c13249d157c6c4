"""Pieces shared by the networks: norms and the conv-bias rule, weight initialisation,
upsampling, argument checks, and presets (``resnet`` into ``resnet_9blocks``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args, get_type_hints

import torch
from torch import nn

from imtrans.errors import InvalidArgumentError

__all__ = [
    "InitName",
    "NormName",
    "PaddingName",
    "UpsamplingName",
    "check_choice",
    "check_init",
    "check_int",
    "conv_bias",
    "init_weights",
    "norm_layer",
    "preset",
    "upsample_block",
]

NormName = Literal["instance", "batch", "syncbatch", "none"]
InitName = Literal["normal", "xavier", "kaiming", "orthogonal"]
UpsamplingName = Literal["transposed", "resize_conv"]
PaddingName = Literal["reflect", "replicate", "zero"]

_T = TypeVar("_T")


def check_choice(name: str, value: object, choices: object) -> None:
    """Raise unless ``value`` is one of the strings of a ``Literal`` alias.

    Args:
        name: Argument name, for the message.
        value: The value given.
        choices: A ``Literal[...]`` alias such as ``NormName``.

    Raises:
        InvalidArgumentError: ``value`` is not one of the accepted strings.

    Example:
        >>> check_choice("norm", "batch", NormName)
    """
    accepted = get_args(choices)
    if value not in accepted:
        names = ", ".join(repr(a) for a in accepted)
        raise InvalidArgumentError(f"{name} must be one of {names}; got {value!r}")


def check_int(name: str, value: object, minimum: int) -> None:
    """Raise unless ``value`` is an int (not a bool) that is at least ``minimum``.

    Args:
        name: Argument name, for the message.
        value: The value given.
        minimum: Smallest accepted value.

    Raises:
        InvalidArgumentError: ``value`` is not an int or is below ``minimum``.

    Example:
        >>> check_int("n_blocks", 9, 0)
    """
    # bool is an int subclass; `ngf=True` is a recipe typo, not a width of 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}; got {value!r}")


def check_init(init: object, gain: object) -> None:
    """Raise unless ``init`` names a scheme and ``gain`` is a positive number.

    Builders call this before building, so a bad recipe fails before any allocation.

    Args:
        init: The initialisation scheme given.
        gain: The gain given.

    Raises:
        InvalidArgumentError: ``init`` is unknown or ``gain`` is not a number > 0.

    Example:
        >>> check_init("normal", 0.02)
    """
    check_choice("init", init, InitName)
    if isinstance(gain, bool) or not isinstance(gain, int | float) or not gain > 0:
        raise InvalidArgumentError(f"init_gain must be a number > 0; got {gain!r}")


def norm_layer(norm: NormName, channels: int) -> nn.Module:
    """Make the normalisation layer named ``norm`` for ``channels`` feature maps.

    Instance norm has no affine parameters and no running statistics, as in the official
    pix2pix/CycleGAN code; batch norm has both.

    Args:
        norm: ``"instance"``, ``"batch"``, ``"syncbatch"`` or ``"none"`` (identity).
        channels: Number of channels to normalise.

    Returns:
        The layer.

    Raises:
        InvalidArgumentError: ``norm`` is not an accepted name.

    Example:
        >>> norm_layer("instance", 64).affine
        False
    """
    check_choice("norm", norm, NormName)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if norm == "syncbatch":
        return nn.SyncBatchNorm(channels)
    return nn.Identity()


def conv_bias(norm: NormName) -> bool:
    """Whether a conv followed by ``norm`` should have a bias.

    Batch norm subtracts the mean and adds its own shift, so a bias before it is wasted.
    Instance norm here has no affine shift, and ``"none"`` has nothing at all, so the conv
    keeps its bias (the official code drops it for ``"none"``; we deliberately do not).

    Args:
        norm: The normalisation that follows the conv.

    Returns:
        True for ``"instance"`` and ``"none"``, False for ``"batch"`` and ``"syncbatch"``.

    Raises:
        InvalidArgumentError: ``norm`` is not an accepted name.

    Example:
        >>> conv_bias("batch")
        False
    """
    check_choice("norm", norm, NormName)
    return norm in ("instance", "none")


def init_weights(module: nn.Module, init: InitName = "normal", gain: float = 0.02) -> None:
    """Initialise conv, linear and batch-norm weights in place, as the official code does.

    Conv and linear weights get N(0, gain), Xavier-normal(gain), Kaiming-normal
    (a=0, fan_in; ``gain`` is not used) or orthogonal(gain); their biases get 0. Batch-norm
    weights (SyncBatchNorm included) get N(1, gain), their biases 0. Other layers keep
    their own defaults. Only ``torch.nn.init`` functions are called, so the weights never
    leave their device; meta tensors are skipped.

    Args:
        module: Network to initialise (every submodule is visited).
        init: Scheme for conv and linear weights.
        gain: Standard deviation or gain of the scheme.

    Raises:
        InvalidArgumentError: ``init`` is unknown or ``gain`` is not positive.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        >>> init_weights(net, "xavier", 0.02)
    """
    check_init(init, gain)
    for layer in module.modules():
        weight = getattr(layer, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.is_meta:
            # Meta tensors hold no values to initialise; skipping them also spares the
            # one-off torch._dynamo import that nn.init triggers on the meta device (~3 s).
            continue
        if isinstance(layer, nn.modules.conv._ConvNd | nn.Linear):
            if init == "normal":
                nn.init.normal_(layer.weight, 0.0, gain)
            elif init == "xavier":
                nn.init.xavier_normal_(layer.weight, gain=gain)
            elif init == "kaiming":
                nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(layer.weight, gain=gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.affine:
            nn.init.normal_(layer.weight, 1.0, gain)
            nn.init.zeros_(layer.bias)


def upsample_block(
    in_channels: int,
    out_channels: int,
    *,
    upsampling: UpsamplingName,
    bias: bool,
    kernel_size: int = 3,
    output_padding: int = 1,
) -> list[nn.Module]:
    """Make the layers that double the spatial size and change the channel count.

    ``"transposed"`` is one ``ConvTranspose2d(kernel_size, stride 2, padding 1,
    output_padding)``: kernel 3 / output_padding 1 for the ResNet generator, kernel 4 /
    output_padding 0 for the U-Net. ``"resize_conv"`` is nearest-neighbour upsampling,
    reflection padding and a 3x3 conv, which avoids checkerboard artefacts; the kernel
    arguments do not apply to it.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        upsampling: ``"transposed"`` or ``"resize_conv"``.
        bias: Whether the conv has a bias.
        kernel_size: Kernel size of the transposed conv.
        output_padding: Output padding of the transposed conv.

    Returns:
        The layers, in order, to splice into an ``nn.Sequential``.

    Raises:
        InvalidArgumentError: ``upsampling`` is not an accepted name.

    Example:
        >>> [type(m).__name__ for m in upsample_block(8, 4, upsampling="resize_conv", bias=True)]
        ['Upsample', 'ReflectionPad2d', 'Conv2d']
    """
    check_choice("upsampling", upsampling, UpsamplingName)
    if upsampling == "transposed":
        conv = nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size, 2, 1, output_padding, bias=bias
        )
        return [conv]
    return [
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d(1),
        nn.Conv2d(in_channels, out_channels, 3, bias=bias),
    ]


def preset(builder: Callable[..., _T], name: str, summary: str, **fixed: Any) -> Callable[..., _T]:
    """Make a builder that is ``builder`` with some keyword arguments fixed.

    The new builder's signature is ``builder``'s minus the fixed parameters (so recipe
    arguments are validated against it), with annotations already resolved to objects,
    and its docstring starts with ``summary``.

    Args:
        builder: Keyword-only builder to specialise.
        name: ``__name__`` of the new builder.
        summary: One-line summary, the first line of the new docstring.
        **fixed: Parameters of ``builder`` and the values they are fixed at.

    Returns:
        The new builder.

    Example:
        >>> def scale(*, x: int = 1, k: int = 2) -> int:
        ...     return x * k
        >>> double = preset(scale, "double", "Doubles x.", k=2)
        >>> double(x=3)
        6
    """
    # Annotations are resolved here, in the builder's own module: as strings they would be
    # looked up in this module's namespace, where names like ``ResnetGenerator`` are unknown.
    signature = inspect.signature(builder, eval_str=True)
    params = [p for key, p in signature.parameters.items() if key not in fixed]
    own_signature = signature.replace(parameters=params)
    settings = ", ".join(f"{key}={value!r}" for key, value in fixed.items())

    def built(**kwargs: Any) -> _T:
        # Binding first turns an unknown or fixed argument into the usual TypeError,
        # naming this builder rather than the one it wraps.
        try:
            own_signature.bind(**kwargs)
        except TypeError as error:
            raise TypeError(f"{name}(): {error}") from None
        return builder(**fixed, **kwargs)

    built.__name__ = built.__qualname__ = name
    built.__module__ = builder.__module__
    built.__signature__ = own_signature  # type: ignore[attr-defined]
    built.__annotations__ = {
        key: value for key, value in get_type_hints(builder).items() if key not in fixed
    }
    built.__doc__ = (
        f"{summary}\n\n"
        f"Same keyword arguments as ``{builder.__name__}`` except those fixed here: "
        f"{settings}.\n\n"
        f"Returns:\n    What ``{builder.__name__}({settings}, ...)`` returns.\n\n"
        f"Example:\n    >>> net = {name}()\n"
    )
    return built
