"""What ``imtrans translate`` writes: the outputs' sample type, file type and values.

A checkpoint records the value range, sample type and bands of each domain (``values`` in its
manifest, :class:`~imtrans.data.value_range.DomainValues`). By default the outputs are written
in the target domain's own type and units: a CT run trained on ``int16`` TIFFs in Hounsfield
units writes ``int16`` TIFFs in Hounsfield units, a 16-bit MRI run 16-bit PNGs, a float run
``float32`` TIFFs, a 6-band run 6-band TIFFs. Runs on 8-bit images, and checkpoints made before
value ranges, write exactly the files they always wrote.

``--dtype`` (``dtype=``) chooses another sample type:

- ``uint16``, ``int16``, ``float32``: the values in the target domain's units, rounded and
  clipped to the type's range for integer types (``uint16`` of Hounsfield units loses the
  values below 0: :meth:`OutputType.clipping` says so).
- ``uint8`` of a domain that is not 8-bit: the target range (``[low, high]``, which the network
  sees as [-1, 1]) mapped onto 0..255, as the previews of training map network values; an
  8-bit rendering to look at, not data in native units.

``--format`` (``format=``) chooses the file type: ``auto`` keeps each input's file type when it
can hold the outputs' type and bands (8-bit outputs of 8-bit inputs, a 16-bit TIFF of a 16-bit
TIFF), else :func:`~imtrans.data.image_writing.default_output_format` (16-bit PNG for ``uint16``
with 1, 3 or 4 channels, TIFF for ``int16``, ``float32`` and other band counts); ``keep`` always
the input's; ``png``, ``tif``, ``jpg``... every output. A file type that cannot hold the outputs
(``float32`` as PNG) is refused before any work.

Example:
    >>> ct = DomainValues(ValueRange(-1024, 3071), "int16", 1)
    >>> kind = output_type(ct, 1)
    >>> kind.dtype, kind.suffix_for(Path("slice.tif")), kind.suffix_for(Path("slice.png"))
    ('int16', '.tif', '.tif')
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from imtrans.data.image_writing import (
    IMAGE_OUTPUT_FORMATS,
    convert_dtype,
    default_output_format,
    encode_image,
)
from imtrans.data.value_range import DomainValues, ValueRange
from imtrans.errors import InvalidArgumentError
from imtrans.inference.translator import domain_values, to_uint8

__all__ = ["DTYPE_CHOICES", "FORMAT_CHOICES", "OUTPUT_DTYPES", "OutputType", "output_type",
           "peek_output"]

#: The sample types outputs are written in.
OUTPUT_DTYPES: tuple[str, ...] = ("uint8", "uint16", "int16", "float32")
#: What ``--dtype`` accepts: ``auto`` is the target domain's own type.
DTYPE_CHOICES: tuple[str, ...] = ("auto", *OUTPUT_DTYPES)
#: What ``--format`` accepts (see the module docstring).
FORMAT_CHOICES: tuple[str, ...] = ("auto", "keep", "png", "tif", "jpg", "webp", "bmp")

# The range of checkpoints made before value ranges: 8-bit images, 0..255.
_EIGHT_BIT = ValueRange(0.0, 255.0)


@functools.lru_cache(maxsize=256)
def _refusal(dtype: str, channels: int, suffix: str) -> str | None:
    """Why a ``suffix`` file cannot hold ``dtype`` images of ``channels`` channels (None: it
    can), found by encoding one pixel, so the rule is :func:`encode_image`'s own."""
    try:
        encode_image(np.zeros((1, 1, channels), dtype), suffix)
    except InvalidArgumentError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class OutputType:
    """How the outputs of a translation are written.

    Attributes:
        dtype: The files' sample type (one of :data:`OUTPUT_DTYPES`).
        channels: Their bands (the generator's output channels).
        values: The target domain's values (``None``: a checkpoint made before value ranges,
            8-bit images in 0..255).
        format: ``auto``, ``keep``, or the suffix every output gets (``.png``).
    """

    dtype: str
    channels: int
    values: DomainValues | None
    format: str = "auto"

    @property
    def range(self) -> ValueRange:
        """The target range: the network's [-1, 1] maps back onto it."""
        return self.values.range if self.values is not None else _EIGHT_BIT

    @property
    def domain_dtype(self) -> str:
        """The target domain's own sample type."""
        return self.values.dtype if self.values is not None else "uint8"

    @property
    def eight_bit(self) -> bool:
        """8-bit outputs of an 8-bit domain: written exactly as translate always wrote them."""
        return self.dtype == "uint8" and self.domain_dtype == "uint8"

    @property
    def preview_mapping(self) -> bool:
        """``uint8`` outputs of a domain that is not 8-bit: the target range onto 0..255."""
        return self.dtype == "uint8" and self.domain_dtype != "uint8"

    def suffix_for(self, source: Path) -> str:
        """The suffix of the output of input ``source`` (see the module docstring)."""
        if self.format == "keep":
            return source.suffix
        if self.format != "auto":
            return self.format
        if _refusal(self.dtype, self.channels, source.suffix.lower()) is None:
            return source.suffix
        return default_output_format(self.dtype, self.channels)

    def check(self, targets: Iterable[Path], *, named: bool = False) -> None:
        """Refuse, before any work, outputs whose file type cannot hold this type and bands.

        Args:
            targets: The planned output files.
            named: The user named the one output file (its suffix was not chosen here).

        Raises:
            InvalidArgumentError: naming the output or option, why, and what can hold them.
        """
        seen: set[str] = set()
        for target in targets:
            suffix = target.suffix.lower()
            if suffix in seen:
                continue
            seen.add(suffix)
            why = _refusal(self.dtype, self.channels, suffix)
            if why is None:
                continue
            bands = f"{self.channels} channel" + ("s" if self.channels > 1 else "")
            what = f"{self.dtype} outputs of {bands}"
            if named:
                where = f"output {target}"
            elif self.format in ("auto", "keep"):
                where = f"--format {self.format} ({target.name})"
            else:
                where = f"--format {self.format.lstrip('.')}"
            fitting = [d for d in OUTPUT_DTYPES if _refusal(d, self.channels, suffix) is None]
            hint = f", or choose --dtype {' or '.join(fitting)}" if fitting else ""
            raise InvalidArgumentError(f"{where} cannot hold the {what}: {why}{hint}")

    def convert(self, image: Tensor) -> np.ndarray:
        """A ``C x H x W`` generator output in [-1, 1] as the ``H x W x C`` array written."""
        if self.dtype == "uint8" and (self.preview_mapping or self.range.is_8bit):
            # The arithmetic of 8-bit outputs, so they stay byte for byte what they were.
            return np.ascontiguousarray(to_uint8(image).permute(1, 2, 0).cpu().numpy())
        native = self.range.denormalize(image.detach().cpu()).permute(1, 2, 0).numpy()
        return convert_dtype(native, self.dtype)

    def describe(self) -> str:
        """What the outputs hold, for a line of ``translate``: type, values and file type.

        Example:
            >>> ct = DomainValues(ValueRange(-1024, 3071), "int16", 1)
            >>> output_type(ct, 1).describe()
            "outputs: int16, the target domain's type, in its units (range -1024..3071)"
        """
        low, high = (f"{v:g}" for v in self.range.as_list())
        if self.preview_mapping:
            text = (f"outputs: uint8, the target range {low}..{high} mapped onto 0..255 (a "
                    "rendering, not native units)")
        elif self.dtype == self.domain_dtype:
            text = f"outputs: {self.dtype}, the target domain's type, in its units " \
                   f"(range {low}..{high})"
        else:
            text = f"outputs: {self.dtype} (the target domain's is {self.domain_dtype}), in " \
                   f"its units (range {low}..{high})"
        if self.format == "keep":
            return f"{text}; files of each input's type"
        return text if self.format == "auto" else f"{text}; {self.format} files"

    def clipping(self) -> str | None:
        """A note when the target range does not fit in :attr:`dtype` (values outside are
        clipped to the type's ends), else ``None``."""
        if self.preview_mapping or np.dtype(self.dtype).kind == "f":
            return None
        info = np.iinfo(np.dtype(self.dtype))
        if info.min <= self.range.low and self.range.high <= info.max:
            return None
        return (f"{self.dtype} holds {info.min}..{info.max}: values of the target range "
                f"{self.range.low:g}..{self.range.high:g} outside it are clipped")


def output_type(values: DomainValues | None, channels: int, *, dtype: str = "auto",
                file_format: str = "auto") -> OutputType:
    """How outputs of a target domain with ``values`` and ``channels`` bands are written.

    Args:
        values: The target domain's values (``Translator.output_values``).
        channels: The generator's output channels.
        dtype: ``auto`` (the target domain's type) or one of :data:`OUTPUT_DTYPES`.
        file_format: ``auto``, ``keep``, or a file type (``png``, ``.tif``...).

    Raises:
        InvalidArgumentError: an unknown ``dtype`` or ``format``.
    """
    if dtype not in DTYPE_CHOICES:
        raise InvalidArgumentError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got "
                                   f"{dtype!r}")
    if file_format not in ("auto", "keep"):
        file_format = (file_format if file_format.startswith(".") else f".{file_format}").lower()
        if file_format not in IMAGE_OUTPUT_FORMATS:
            raise InvalidArgumentError(
                f"file_format must be auto, keep or one of "
                f"{', '.join(f.lstrip('.') for f in IMAGE_OUTPUT_FORMATS)}, got "
                f"{file_format.lstrip('.')!r}")
    chosen = (values.dtype if values is not None else "uint8") if dtype == "auto" else dtype
    if chosen not in OUTPUT_DTYPES:  # a checkpoint's own type imtrans does not write
        chosen = "float32"
    return OutputType(chosen, channels, values, file_format)


def peek_output(checkpoint: str | Path, direction: str) -> tuple[DomainValues | None, int]:
    """The target domain's values and bands of ``direction`` in a checkpoint (a file or a run
    directory), from the file's header only, so outputs can be planned and checked before the
    checkpoint is loaded.

    A file that cannot be read so gives ``(None, 3)``: loading it then says what is wrong.
    """
    from safetensors import safe_open

    from imtrans.core.jsonfile import loads_bounded
    from imtrans.runs.checkpoints.files import MANIFEST_KEY
    from imtrans.runs.checkpoints.lookup import find_checkpoint

    try:
        path = find_checkpoint(checkpoint)
        if not path.is_file():  # a FIFO or device would block or act when opened
            return None, 3
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
        manifest: Any = loads_bounded(metadata[MANIFEST_KEY])
        _, values = domain_values(manifest, direction)
        if values is not None:
            return values, values.channels
        data = manifest["recipe"].get("data", {})
        channels = data.get("out_channels" if direction == "AtoB" else "in_channels", 3)
        return None, channels if isinstance(channels, int) and channels >= 1 else 3
    except Exception:  # any damage: load_translator reads the file again and says why
        return None, 3
