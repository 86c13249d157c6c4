"""Whether a valid recipe can run here: its device exists, its networks take its crop size,
and their weights, optimiser state and activations fit in the device's memory.

:func:`imtrans.training.build.build_training` calls :func:`check_feasible` with the trainer
it builds, before any data is read or memory taken; ``imtrans validate`` calls it too, so
``validate``, ``run`` and ``bench`` refuse the same recipes. Loading a recipe builds nothing.
Everything is built and run on the meta device: shapes only, no weights, no compute.

Example:
    >>> from imtrans import components, load_recipe
    >>> recipe = load_recipe("recipes/pix2pix_facades.toml", ["discriminator.n_layers=9",
    ...                      "run.device=cpu"])
    >>> check_feasible(recipe, components())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    imtrans.errors.RecipeError: discriminator.n_layers = 9: the discriminator (patchgan) ...
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from imtrans.catalogue.assembly import build_networks, build_trainer, network_specs
from imtrans.core.components import Components
from imtrans.core.contracts import size_multiple
from imtrans.core.device import device_memory, parse_device
from imtrans.errors import InvalidArgumentError, RecipeError
from imtrans.recipe.schema import Recipe
from imtrans.trainers.base import NetworkSpec, Trainer
from imtrans.training.speed import check_speed

__all__ = ["check_feasible", "check_network_sizes", "estimate_bytes"]

#: Preprocessing modes that end in a ``crop_size`` square (the others keep the image's size,
#: which only the data knows: :func:`imtrans.training.build.check_image_size` checks those).
_CROPPING = ("resize_and_crop", "crop", "scale_width_and_crop")

#: The argument that sets a network's depth, per builder, for the message.
_DEPTH_KEYS = ("n_layers", "num_downs", "n_downsampling", "n_blocks")

#: Depth arguments where each level at least halves the image, and width arguments (channels).
_HALVING_KEYS = ("n_layers", "num_downs", "n_downsampling")
_WIDTH_KEYS = ("ngf", "ndf")

#: The most halvings and channels accepted before a network is laid out: 2**30 pixels a side
#: is past any image, and 2**20 channels past any memory. Larger values took minutes to lay
#: out (num_downs = 100000) or overflowed torch's size computation (ngf = 100000000).
_MAX_HALVINGS = 30
_MAX_WIDTH = 1 << 20

#: fp32 bytes per parameter during training: the weight, its gradient and Adam's two moments.
_BYTES_PER_PARAMETER = 4 * 4


def check_feasible(recipe: Recipe, registry: Components, trainer: Trainer | None = None
                   ) -> None:
    """Refuse a recipe that cannot run on this machine, naming the key to change.

    ``trainer``: the recipe's trainer when the caller built it already (it is only asked
    which networks it needs); built here otherwise.

    Raises:
        RecipeError: ``run.device`` names no device here; a ``[speed]`` switch it cannot
            honour (:func:`~imtrans.training.speed.check_speed`); ``data.crop_size`` is not a
            multiple a generator needs, or too small for a network's depth; or the networks
            cannot fit in the device's memory.
    """
    try:
        device = parse_device(recipe.run.device, "run.device")
    except InvalidArgumentError as exc:
        raise RecipeError(str(exc)) from None
    check_speed(recipe.speed, device)  # what apply_speed refuses: `validate` refuses it too
    trainer = trainer if trainer is not None else build_trainer(recipe, registry)
    specs = network_specs(trainer, recipe)
    check_network_sizes(recipe, specs)
    try:
        networks = build_networks(recipe, registry, trainer, "meta")
    except RuntimeError as exc:  # a plugin's size torch cannot even lay out
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(f"the networks cannot be laid out ({reason[:200]}); lower their "
                          "widths or depths") from None
    total = device_memory(device)
    parameters = sum(p.numel() for net in networks.values() for p in net.parameters())
    # Parameters first: a forward pass of a network too big to train is not worth its time.
    _check_memory(recipe, device, total, parameters * _BYTES_PER_PARAMETER, parameters)
    side = _crop_side(recipe)
    if side is None:
        return
    activations = 0
    for role, net in networks.items():
        spec = specs[role]
        _check_multiple(recipe, role, spec, net, side)
        activations += _meta_forward(recipe, role, spec, net, side)
    needed = estimate_bytes(parameters, activations, recipe.speed.precision)
    _check_memory(recipe, device, total, needed, parameters)


def check_network_sizes(recipe: Recipe, specs: dict[str, NetworkSpec]) -> None:
    """Refuse a depth or width no machine can build, before anything is laid out.

    Raises:
        RecipeError: naming the key, its value and the bound.
    """
    for spec in specs.values():
        table = getattr(recipe, spec.section)
        for key, value in table.kwargs.items():
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            if key in _HALVING_KEYS and value > _MAX_HALVINGS:
                raise RecipeError(f"{spec.section}.{key} = {value}: each level halves the "
                                  f"data.crop_size crops, so past {_MAX_HALVINGS} levels no "
                                  "image fits; make it shallower")
            if key in _WIDTH_KEYS and value > _MAX_WIDTH:
                raise RecipeError(f"{spec.section}.{key} = {value}: at most {_MAX_WIDTH:,} "
                                  "channels (a network that wide fits in no memory); lower it")


def estimate_bytes(parameters: int, activations: int, precision: str = "fp32") -> int:
    """A lower bound of the memory one training step takes: fp32 weights, gradients and two
    Adam moments, plus each network's outputs kept for the backward pass, counted once (a
    step runs some networks more than once, so the real need is higher)."""
    per_value = 2 if precision == "bf16" else 4
    return parameters * _BYTES_PER_PARAMETER + activations * per_value


def _crop_side(recipe: Recipe) -> int | None:
    kwargs = recipe.data.kwargs
    side = kwargs.get("crop_size")
    if kwargs.get("preprocess") not in _CROPPING or not isinstance(side, int):
        return None
    return side


def _check_multiple(recipe: Recipe, role: str, spec: NetworkSpec, net: nn.Module,
                    side: int) -> None:
    multiple = size_multiple(net)
    if side % multiple:
        table = getattr(recipe, spec.section)
        raise RecipeError(
            f"data.crop_size = {side}: {role} ({table.name}) takes images whose sides are "
            f"multiples of {multiple}, but [data] gives {side}x{side}: set data.crop_size "
            "(and data.load_size) to a multiple of it, or choose a generator for this size "
            "(e.g. generator.name=unet with num_downs = log2 of the size)")


def _meta_forward(recipe: Recipe, role: str, spec: NetworkSpec, net: nn.Module,
                  side: int) -> int:
    """Run ``net`` in training mode on a meta batch of crops; return the values its layers
    output (what the backward pass keeps). A network whose layers shrink the crop to nothing
    is refused here, before any data is read."""
    channels = spec.overrides.get("in_channels")
    if not isinstance(channels, int):
        return 0  # a plugin trainer's network of unknown input: nothing to try it on
    outputs = [0]

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and not any(module.children()):
            outputs[0] += output.numel()

    hooks = [module.register_forward_hook(count) for module in net.modules()]
    batch = torch.empty(recipe.data.batch_size, channels, side, side, device="meta")
    try:
        net.train()
        with torch.no_grad():
            net(batch)
    except NotImplementedError:
        return 0  # an operation without a meta kernel: this network cannot be checked so
    except (RuntimeError, ValueError, IndexError) as exc:
        table = getattr(recipe, spec.section)
        depth = next((key for key in _DEPTH_KEYS if key in table.kwargs), None)
        where = f"{spec.section}.{depth} = {table.kwargs[depth]}" if depth else f"[{spec.section}]"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(
            f"{where}: the {spec.section} ({table.name}) cannot take the {side}x{side} crops "
            f"of data.crop_size (its layers shrink them to nothing: {reason}); make it "
            "shallower or raise data.crop_size") from None
    finally:
        for hook in hooks:
            hook.remove()
    return outputs[0]


def _check_memory(recipe: Recipe, device: torch.device, total: int | None, needed: int,
                  parameters: int) -> None:
    if total is None or needed <= total:
        return
    raise RecipeError(
        f"the networks cannot fit in the memory of {device} ({_gib(total)}): {parameters:,} "
        f"parameters at batch {recipe.data.batch_size} need at least {_gib(needed)} to train; "
        "lower generator.ngf / discriminator.ndf, data.batch_size or data.crop_size")


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"
