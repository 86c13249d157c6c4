"""A trained generator, loaded from a checkpoint, that translates tensors, images and arrays.

Arrays are in native units (16-bit, signed, float, any band count):
:meth:`Translator.translate_array` maps them through the checkpoint's value ranges.

Example:
    >>> import imtrans
    >>> translate = imtrans.load_translator("runs/cyclegan/checkpoints")  # doctest: +SKIP
    >>> translate(PIL.Image.open("photo.jpg")).save("painting.png")  # doctest: +SKIP
    >>> ct = imtrans.load_translator("runs/pix2pix_ct_denoise")  # doctest: +SKIP
    >>> ct.translate_array(read_native("noisy.tif", 1))  # HU in, HU out  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from imtrans.catalogue.assembly import build_trainer, create_component, network_specs
from imtrans.catalogue.plugins import Components, components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.core.contracts import size_multiple
from imtrans.core.device import parse_device
from imtrans.core.state_tensors import (
    assign_module_tensors,
    check_module_shapes,
    load_module_tensors,
)
from imtrans.data.images import image_to_array
from imtrans.data.transforms import to_tensor
from imtrans.data.value_range import (
    DomainValues,
    ValueRange,
    dtype_range,
    to_network_tensor,
    values_from_manifest,
)
from imtrans.errors import CheckpointError, InvalidArgumentError, RecipeError
from imtrans.inference.image_norm import ImageStatisticsNorm
from imtrans.inference.precision import (
    Precision,
    network_call,
    precision_name,
    resolve_precision,
)
from imtrans.inference.tiling import padded_size, reflect_pad, translate_tiled
from imtrans.recipe import Recipe
from imtrans.runs.checkpoints.files import load_checkpoint
from imtrans.runs.checkpoints.lookup import find_checkpoint
from imtrans.trainers.ema import EMA_PREFIX

__all__ = ["Mode", "Translator", "Weights", "domain_values", "input_range", "load_translator",
           "to_uint8", "translator_for"]

#: ``paper``: as the pix2pix paper tests (each image normalised by its own statistics, dropout
#: kept on); ``eval``: the usual ``model.eval()`` (running batch-norm statistics, no dropout).
Mode = Literal["paper", "eval"]

#: ``ema``: the generator's moving average (``train.ema``), which a checkpoint holds when its
#: run kept one; ``raw``: the trained weights themselves. By default the average when the
#: checkpoint holds it, else the trained weights.
Weights = Literal["ema", "raw"]


def _use_image_statistics(module: nn.Module) -> nn.Module:
    """Replace every batch-norm layer of ``module`` (in place) by an
    :class:`~imtrans.inference.image_norm.ImageStatisticsNorm`: batch norm as it behaves in
    training mode on a batch of one image, for every image of a batch independently, with the
    learned scale and shift. The running statistics are not used or changed."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, ImageStatisticsNorm(child.weight, child.bias, child.eps))
        else:
            _use_image_statistics(child)
    return module


def to_uint8(images: Tensor) -> Tensor:
    """Map generator output in [-1, 1] to ``uint8`` 0..255 (rounded, clamped)."""
    # In place on clamp's new tensor: one float copy of a large image, not four.
    return images.float().clamp(-1, 1).add_(1).mul_(127.5).round_().to(torch.uint8)


@dataclass
class Translator:
    """A generator ready to translate images of any size.

    Call it on a ``C x H x W`` or ``N x C x H x W`` float tensor in [-1, 1] (the range the
    networks train in) to get the same back, or on a PIL image to get a PIL image (8 bits).
    For scientific images (16-bit, signed, float, any band count) call
    :meth:`translate_array` on an ``H x W x C`` array in the input domain's own units (as
    :func:`~imtrans.data.native_images.read_native` reads it): it returns ``float32`` in the
    target domain's units (Hounsfield units for a CT checkpoint), which
    :func:`~imtrans.data.image_writing.convert_dtype` and
    :func:`~imtrans.data.image_writing.encode_image` turn into a file. Sides that are not
    multiples of :attr:`size_multiple` are padded by reflection and cropped back; images
    with more than ``tile_size ** 2`` pixels are translated in overlapping tiles.

    Attributes:
        generator: The network, in evaluation mode, on :attr:`device`.
        direction: ``AtoB`` or ``BtoA`` (the recipe's inputs to targets, or the inverse).
        in_channels: Channels the generator takes.
        out_channels: Channels it returns.
        size_multiple: What every side it takes must be a multiple of.
        device: Where it runs.
        recipe: The recipe the checkpoint was trained from.
        step: The training step of the checkpoint.
        checkpoint: The file it came from (``None`` for a network still training).
        tile_size: Largest side translated in one piece (a multiple of ``size_multiple``).
        tile_overlap: Pixels that neighbouring tiles share (at most half a tile).
        epoch: The epochs completed at the checkpoint, when known.
        weights: ``ema`` (the moving average of the weights) or ``raw`` (the trained ones).
        input_values: The value range, sample type and bands of the domain it reads (from
            the checkpoint's ``values``); ``None`` for checkpoints made before value ranges,
            which trained 8-bit images in 0..255.
        output_values: The same for the domain it writes: outputs map back to these units.
        precision: The number type the generator runs in (``torch.float32`` unless
            ``precision`` asked :func:`load_translator` for 16 bits); inputs and outputs are
            float32 whatever it is.
        compiled: Whether the generator runs through :func:`torch.compile`.
    """

    generator: nn.Module
    direction: str
    in_channels: int
    out_channels: int
    size_multiple: int
    device: torch.device
    recipe: Recipe
    step: int
    checkpoint: Path | None
    tile_size: int = 1024
    tile_overlap: int = 64
    epoch: int | None = None
    weights: Weights = "raw"
    input_values: DomainValues | None = None
    output_values: DomainValues | None = None
    precision: torch.dtype = torch.float32
    compiled: bool = False
    #: The generator's call: casts float32 inputs to :attr:`precision` and back, compiled or
    #: not (see :func:`~imtrans.inference.precision.network_call`).
    network: Callable[[Tensor], Tensor] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.network is None:
            self.network = network_call(self.generator, self.precision, self.device,
                                        self.compiled)
        self.tile_size = padded_size(self.tile_size, self.size_multiple)
        # At most half the tile: each pixel is then translated at most 4 times. An overlap of
        # tile - 1 moves each tile by one pixel (a million tiles for a 1000 px side).
        if not 0 <= self.tile_overlap <= self.tile_size // 2:
            raise InvalidArgumentError(f"tile overlap must be in [0, {self.tile_size // 2}] "
                                       f"(half the tile of {self.tile_size}), got "
                                       f"{self.tile_overlap}")

    @overload
    def __call__(self, images: Tensor) -> Tensor: ...
    @overload
    def __call__(self, images: Image.Image) -> Image.Image: ...

    def __call__(self, images: Tensor | Image.Image) -> Tensor | Image.Image:
        if isinstance(images, Image.Image):
            return self.translate_image(images)
        if images.dim() == 3:
            return self.translate_batch(images[None])[0]
        return self.translate_batch(images)

    @property
    def precision_name(self) -> str:
        """``fp32``, ``bf16`` or ``fp16``: :attr:`precision` as ``--precision`` names it."""
        return precision_name(self.precision)

    def translate_batch(self, images: Tensor) -> Tensor:
        """Translate ``N x C x H x W`` images in [-1, 1]; returns them on the input's device."""
        with torch.inference_mode():
            out = self._translate_batch(images)
        # A tensor made in inference mode cannot be changed in place outside it: the caller
        # gets an ordinary one (a copy of the output only, small beside the network's work).
        return out.clone()

    def _translate_batch(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise InvalidArgumentError(
                f"expected images of shape N x {self.in_channels} x H x W, got "
                f"{tuple(images.shape)}")
        height, width = images.shape[-2:]
        target_h = padded_size(height, self.size_multiple)
        target_w = padded_size(width, self.size_multiple)
        if target_h * target_w > self.tile_size**2:
            padded = reflect_pad(images.float().cpu(), target_h, target_w)
            out = translate_tiled(self._network, padded, self.tile_size, self.tile_overlap,
                                  self.device)
        else:
            padded = reflect_pad(images.to(self.device, torch.float32), target_h, target_w)
            out = self._network(padded)
        return out[..., :height, :width].to(images.device)

    def _network(self, images: Tensor) -> Tensor:
        assert self.network is not None  # set by __post_init__
        return self.network(images)

    def translate_image(self, image: Image.Image) -> Image.Image:
        """Translate a PIL image (converted to the generator's channel count) to a PIL image."""
        tensor = to_tensor(image_to_array(image, self.in_channels))
        return tensor_to_image(self.translate_batch(tensor[None])[0])

    def input_range(self, dtype: np.dtype[Any] | str) -> ValueRange | None:
        """The native range an input array of ``dtype`` maps onto [-1, 1] with (``None``: the
        type's full range); see :func:`input_range`."""
        return input_range(self.input_values, dtype)

    @property
    def output_range(self) -> ValueRange:
        """The native range [-1, 1] maps back onto on output (0..255 for checkpoints made
        before value ranges, which trained 8-bit images)."""
        return (self.output_values.range if self.output_values is not None
                else ValueRange(0.0, 255.0))

    def to_network(self, array: np.ndarray) -> Tensor:
        """An ``H x W x C`` array in the input domain's units as the ``C x H x W`` tensor in
        [-1, 1] the generator takes (``uint8`` in 0..255: exactly ``to_tensor``'s values)."""
        return to_network_tensor(array, self.input_range(array.dtype))

    def to_native(self, images: Tensor) -> np.ndarray:
        """Generator outputs (``C x H x W`` or ``N x C x H x W``, in [-1, 1], clamped) as
        ``float32`` arrays in the target domain's units, channels last (``H x W x C``)."""
        native = self.output_range.denormalize(images.detach().cpu())
        return np.ascontiguousarray(native.movedim(-3, -1).numpy())

    def translate_array(self, array: np.ndarray) -> np.ndarray:
        """Translate an ``H x W x C`` array in the input domain's native units (``uint8``,
        ``uint16``, ``int16``, ``float32``; ``C`` = :attr:`in_channels`) to an ``H x W x C``
        ``float32`` array in the target domain's native units.

        The input is normalised with the checkpoint's input range (:attr:`input_values`; for
        checkpoints without one, and where the run's range was its files' sample type's full
        range, the array's own type's full range: 8-bit arrays give the values
        :meth:`translate_image` gives; see :func:`input_range`) and the output mapped back
        with its output range (:attr:`output_values`; without one, 0..255). Padding and tiling
        are :meth:`translate_batch`'s. ``convert_dtype(result, translator.output_values.dtype)``
        gives the target domain's own sample type.

        Raises:
            InvalidArgumentError: ``array`` is not ``H x W x in_channels``.

        Example:
            >>> hu = translator.translate_array(read_native("noisy.tif", 1))  # doctest: +SKIP
            >>> hu.dtype, hu.shape  # doctest: +SKIP
            (dtype('float32'), (512, 512, 1))
        """
        array = np.asarray(array)
        if array.ndim == 2 and self.in_channels == 1:
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[2] != self.in_channels:
            raise InvalidArgumentError(
                f"expected an array of shape H x W x {self.in_channels}, got "
                f"{tuple(array.shape)}")
        output = self.translate_batch(self.to_network(array)[None])
        return self.to_native(output[0])


def input_range(values: DomainValues | None, dtype: np.dtype[Any] | str) -> ValueRange | None:
    """The range an input array of sample type ``dtype`` is normalised with, for a domain of
    ``values`` (``None``: the array's type's full range).

    The domain's range, except where it is the full range of the domain's own sample type
    (``value_range = "dtype"``, as 8-bit runs have) and the array is of another type: then the
    array's type's full range, as training normalises each file by its own type. So a 16-bit
    image given to an 8-bit run fills 0..65535 as the run's images filled 0..255, rather than
    being clipped at 255; explicit and ``auto`` ranges (CT in HU) apply to every type.

    Example:
        >>> eight_bit = DomainValues(ValueRange(0.0, 255.0), "uint8", 3)
        >>> input_range(eight_bit, "uint8"), input_range(eight_bit, "uint16")
        (ValueRange(low=0.0, high=255.0), None)
    """
    if values is None:
        return None
    if np.dtype(dtype) != np.dtype(values.dtype) and values.range == dtype_range(values.dtype):
        return None
    return values.range


def tensor_to_image(image: Tensor) -> Image.Image:
    """A ``C x H x W`` tensor in [-1, 1] with 1, 3 or 4 channels as a PIL image."""
    channels = image.shape[0]
    if channels not in (1, 3, 4):
        raise InvalidArgumentError(f"cannot make an image file of {channels} channels; use the "
                                   "tensor interface for other channel counts")
    array = to_uint8(image).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array.squeeze(2) if channels == 1 else array))


def load_translator(path: Path | str, *, direction: str = "AtoB",
                    device: str | torch.device | None = None, mode: Mode = "paper",
                    tile_size: int = 1024, tile_overlap: int = 64,
                    registry: Components | None = None,
                    weights: Weights | None = None, precision: Precision = "fp32",
                    compile: bool = False) -> Translator:
    """Load the generator of ``direction`` from a checkpoint made by ``imtrans run``.

    The translator's :attr:`~Translator.input_values` and :attr:`~Translator.output_values`
    hold the value ranges and sample types the run trained with (``None`` for 8-bit runs made
    before value ranges); :meth:`Translator.translate_array` translates arrays in those native
    units (a CT checkpoint: Hounsfield units in and out), and ``imtrans translate`` writes the
    target domain's type (16-bit PNG, ``int16`` or ``float32`` TIFF) by default.

    Args:
        path: A checkpoint file, or a run directory (its newest checkpoint is used).
        direction: ``AtoB`` (the recipe's inputs to its targets) or ``BtoA`` (the inverse, for
            methods that learn it, such as CycleGAN).
        device: Where to run (default: CUDA when available, else the CPU).
        mode: ``paper`` or ``eval``; see :data:`Mode`. Instance-norm networks without dropout
            (CycleGAN's) give the same result in both.
        tile_size: Images with more pixels than ``tile_size ** 2`` are translated in tiles.
        tile_overlap: Overlap of neighbouring tiles, blended linearly; at most half of
            ``tile_size`` (rounded up to the generator's multiple).
        registry: Components to build the generator with (default: built-ins and plugins).
        weights: ``ema`` or ``raw`` (see :data:`Weights`); default: the moving average when
            the checkpoint holds one, else the trained weights.
        precision: ``fp32`` (the default: the network as trained), ``bf16`` or ``fp16`` (the
            generator cast to 16 bits: faster where the hardware has them, a few 0-255 levels
            off), or ``auto`` (bf16 on a CUDA GPU that supports it and on a CPU with native
            bf16, else fp32); see :mod:`imtrans.inference.precision`.
        compile: Run the generator through :func:`torch.compile` (compiled on the first
            image of each size; where compilation fails, eager after one warning).

    Raises:
        CheckpointError: the file is unreadable, not a training checkpoint, holds a recipe
            this installation cannot build, or tensors that do not fit its generator (checked
            before the generator's weights are allocated).
        InvalidArgumentError: the method has no generator for ``direction``, ``device``
            is not a device this machine has, or ``weights="ema"`` for a checkpoint without
            an average, or a ``precision`` the device cannot run.
    """
    if mode not in ("paper", "eval"):
        raise InvalidArgumentError(f"mode must be 'paper' or 'eval', got {mode!r}")
    if weights not in (None, "ema", "raw"):
        raise InvalidArgumentError(f"weights must be 'ema' or 'raw', got {weights!r}")
    registry = registry or components()
    device = parse_device(device, "device")  # before the checkpoint: a bad name fails fast
    resolve_precision(precision, device)  # likewise a precision the device cannot run
    checkpoint = load_checkpoint(find_checkpoint(path))
    recipe = _recipe_of(checkpoint.manifest, checkpoint.path, registry)
    trainer = build_trainer(recipe, registry)
    if direction not in trainer.translators:
        raise InvalidArgumentError(
            f"trainer {recipe.trainer.name!r} has no {direction} generator; it translates "
            f"{', '.join(trainer.translators) or 'nothing'}")
    role = trainer.translators[direction]
    imported = checkpoint.manifest.get("imported")
    if isinstance(imported, dict) and role in imported.get("fresh_networks", []):
        raise InvalidArgumentError(
            f"{checkpoint.path} was imported without a {direction} generator ({role} is "
            "freshly initialised, not trained); translate in the direction the import held, "
            "or fine-tune it first")
    prefix = _weights_prefix(checkpoint.tensors, role, weights, checkpoint.path)
    spec = network_specs(trainer, recipe)[role]
    table = getattr(recipe, spec.section)

    def build() -> nn.Module:
        return create_component(registry, spec.kind, table.name, spec.section,
                                table.kwargs | spec.overrides)

    # The recipe comes from the file, and its sizes could ask for any amount of memory. The
    # network is laid out on the meta device (no memory) and checked against the file's
    # tensors, whose sizes the file bounds, before its weights are allocated.
    with torch.device("meta"):
        layout = build()
    check_module_shapes(prefix, layout, checkpoint.tensors)
    # The layout takes the checkpoint's tensors as its own where they are all its state; a
    # network with state of its own (a buffer its constructor computes) is built for real.
    if assign_module_tensors(prefix, layout, checkpoint.tensors):
        generator = layout
    else:
        generator = build()
        load_module_tensors(prefix, generator, checkpoint.tensors)
    translator = translator_for(generator, recipe, registry, direction=direction,
                                device=device, mode=mode,
                                step=int(checkpoint.manifest.get("step", 0)),
                                checkpoint=checkpoint.path, tile_size=tile_size,
                                tile_overlap=tile_overlap, copy_network=False,
                                epoch=checkpoint.manifest.get("epoch"), precision=precision,
                                compile=compile)
    translator.weights = "ema" if prefix.startswith(f"{EMA_PREFIX}.") else "raw"
    translator.input_values, translator.output_values = domain_values(checkpoint.manifest,
                                                                      direction)
    return translator


def domain_values(manifest: dict[str, Any], direction: str
                  ) -> tuple[DomainValues | None, DomainValues | None]:
    """The value ranges and types of the domain ``direction`` reads and of the one it writes,
    from a checkpoint's manifest; ``(None, None)`` for checkpoints made before value ranges."""
    values = values_from_manifest(manifest)
    if values is None or not {"A", "B"} <= values.keys():
        return None, None
    # The dataset's A is the recipe's input domain; BtoA translates B into A.
    source, target = ("A", "B") if direction == "AtoB" else ("B", "A")
    return values[source], values[target]


def _weights_prefix(tensors: dict[str, Tensor], role: str, weights: Weights | None,
                    path: Path) -> str:
    """The checkpoint prefix of the ``role`` weights asked for: ``ema.<role>`` or
    ``net.<role>``."""
    averaged = f"{EMA_PREFIX}.{role}"
    held = any(name.startswith(f"{averaged}.") for name in tensors)
    if weights == "ema" and not held:
        raise InvalidArgumentError(
            f"{path} holds no EMA weights of {role} (its run had no train.ema); use the raw "
            "weights (--weights raw), or train with --set train.ema=0.999")
    return averaged if held and weights != "raw" else f"net.{role}"


def translator_for(generator: nn.Module, recipe: Recipe, registry: Components, *,
                   direction: str, device: torch.device, mode: Mode = "paper", step: int = 0,
                   checkpoint: Path | None = None, tile_size: int = 1024,
                   tile_overlap: int = 64, copy_network: bool = True,
                   epoch: int | None = None, precision: Precision = "fp32",
                   compile: bool = False) -> Translator:
    """A :class:`Translator` around ``generator``, the ``direction`` network of ``recipe``'s
    trainer. With ``copy_network`` (for a network still training) the translator works on a
    copy, so the original keeps its mode, layers and gradients. ``precision`` and ``compile``
    are :func:`load_translator`'s."""
    dtype = resolve_precision(precision, torch.device(device))
    trainer = build_trainer(recipe, registry)
    spec = network_specs(trainer, recipe)[trainer.translators[direction]]
    if copy_network:
        generator = copy.deepcopy(generator)
    return Translator(
        generator=_cast(_prepare(generator, mode).to(device), dtype), direction=direction,
        in_channels=int(spec.overrides.get("in_channels", 3)),
        out_channels=int(spec.overrides.get("out_channels", 3)),
        size_multiple=size_multiple(generator), device=torch.device(device),
        recipe=recipe, step=step, checkpoint=checkpoint, tile_size=tile_size,
        tile_overlap=tile_overlap, epoch=epoch, precision=dtype, compiled=compile)


def _recipe_of(manifest: dict[str, Any], path: Path, registry: Components) -> Recipe:
    raw = manifest.get("recipe")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} has no recipe in its manifest; it was not written by "
                              "imtrans run")
    try:
        return recipe_from_dict(raw, registry=registry)
    except RecipeError as exc:
        # A recipe of a run made with a plugin that is not installed lands here too.
        raise CheckpointError(f"{path}: the recipe in its manifest is not valid here: "
                              f"{exc}") from None


def _cast(generator: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The generator's weights in ``dtype`` (float32: left as they are)."""
    return generator if dtype == torch.float32 else generator.to(dtype)


def _prepare(generator: nn.Module, mode: Mode) -> nn.Module:
    """Evaluation mode; in ``paper`` mode, with image statistics and dropout left on."""
    generator.eval()
    if mode == "paper":
        generator = _use_image_statistics(generator)
        for module in generator.modules():
            if isinstance(module, nn.Dropout | nn.Dropout2d):
                module.train()
    for param in generator.parameters():
        param.requires_grad_(False)
    return generator
