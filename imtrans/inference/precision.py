"""The number type and the compilation a translator's generator runs with.

``fp32`` is the network as trained (the default: outputs byte for byte those of every earlier
version); ``bf16`` and ``fp16`` cast the generator's weights and its inputs to 16 bits, about
twice as fast where the hardware multiplies them natively, at a cost of a few 0-255 levels
(``docs/inference.md`` gives the measured differences); ``auto`` picks ``bf16`` where the
hardware runs it faster (a CUDA GPU with bf16, a CPU with native bf16 instructions and oneDNN)
and ``fp32`` elsewhere. ``compile`` runs the generator through :func:`torch.compile`; when
compilation fails (no C++ compiler for the CPU backend, say) the generator runs eagerly after
one :class:`CompileFallbackWarning`.

Example:
    >>> resolve_precision("fp32", torch.device("cpu"))
    torch.float32
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from imtrans.errors import InvalidArgumentError
from imtrans.inference.image_norm import per_image_norms
from imtrans.inference.narrow_conv import stack_narrow_convs

__all__ = ["PRECISIONS", "CompileFallbackWarning", "Precision", "bf16_runs_faster",
           "cpu_has_native_bf16", "network_call", "precision_name", "resolve_precision"]

#: The number types a translator can run its generator in.
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# The CPU instructions that make bf16 faster than fp32 in oneDNN's convolutions: without them
# bf16 is emulated and slower than fp32.
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


class CompileFallbackWarning(UserWarning):
    """``compile`` was asked for but compilation failed: the generator runs eagerly."""


def precision_name(dtype: torch.dtype) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for a number type of :func:`resolve_precision`."""
    return next(name for name, value in _DTYPES.items() if value == dtype)


def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The instruction-set flags of the first processor in ``cpuinfo`` (``None`` where the
    file is missing: not Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 BF16 or AMX) and torch's oneDNN
    can use it: bf16 convolutions then run about twice as fast as fp32 ones."""
    if not torch.backends.mkldnn.is_available():
        return False
    flags = _cpu_flags()
    if flags is not None:
        return bool(_NATIVE_BF16_FLAGS & flags)
    # Not Linux: torch's own probe of the instruction set (a private helper, so guarded).
    probes = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(probe()) for probe in probes if callable(probe))


def bf16_runs_faster(device: torch.device) -> bool:
    """Whether ``auto`` picks bf16 on ``device``: a CUDA GPU that supports it, or a CPU with
    native bf16 (:func:`cpu_has_native_bf16`)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The number type ``precision`` (one of :data:`PRECISIONS`) means on ``device``.

    Raises:
        InvalidArgumentError: an unknown name, or a 16-bit type the device cannot run a
            network in.
    """
    if precision not in PRECISIONS:
        raise InvalidArgumentError(f"precision must be one of {', '.join(PRECISIONS)}, got "
                                   f"{precision!r}")
    if precision == "auto":
        return torch.bfloat16 if bf16_runs_faster(device) else torch.float32
    dtype = _DTYPES[precision]
    if dtype != torch.float32:
        _check_runs(dtype, device, precision)
    return dtype


def _check_runs(dtype: torch.dtype, device: torch.device, name: str) -> None:
    """Refuse a number type that a small convolution network cannot run in on ``device``."""
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise InvalidArgumentError("this GPU does not support bf16; use --precision fp16 or "
                                   "fp32")
    probe = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4),
                          nn.ReLU(), nn.ConvTranspose2d(4, 3, 3, 2, 1, 1), nn.Tanh())
    try:
        with torch.inference_mode():
            probe.to(device, dtype)(torch.zeros(1, 3, 8, 8, device=device, dtype=dtype))
    except (RuntimeError, NotImplementedError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArgumentError(f"--precision {name} does not run on {device} here "
                                   f"({first}); use fp32 or auto") from None


def network_call(generator: nn.Module, dtype: torch.dtype, device: torch.device,
                 compile: bool = False) -> Callable[[Tensor], Tensor]:
    """The call that runs ``generator`` (already cast to ``dtype``) on float32 ``N x C x H x W``
    images and returns float32 ones.

    Inputs are cast to ``dtype`` and laid out channels last for 16-bit types on CUDA (the
    layout tensor cores read) and for bf16 on the CPU (oneDNN's blocked bf16 convolutions
    read it without a reorder). On the CPU the generator's instance norms are then replaced by
    :class:`~imtrans.inference.image_norm.ImageStatisticsNorm`, which computes the same
    without leaving that layout (``F.instance_norm`` copies a channels-last batch back), and
    its convolutions to a few channels (the last layer) by
    :class:`~imtrans.inference.narrow_conv.ColumnStackedConv2d`, which gives oneDNN the work
    of 16 channels on a fraction of the positions instead of on all of them. With
    ``compile``, the generator is compiled on first use, and runs eagerly after one
    :class:`CompileFallbackWarning` when compilation fails.
    """
    channels_last = _runs_channels_last(dtype, device)
    if channels_last:
        if device.type == "cpu":
            per_image_norms(generator)
            stack_narrow_convs(generator)
        generator.to(memory_format=torch.channels_last)
    forward: Callable[[Tensor], Tensor] = generator
    if compile:
        forward = _CompiledOrEager(generator)

    def call(images: Tensor) -> Tensor:
        if dtype != torch.float32 or channels_last:
            images = images.to(dtype=dtype, memory_format=(
                torch.channels_last if channels_last else torch.contiguous_format))
        return forward(images).float().contiguous()

    return call


def _runs_channels_last(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the generator runs channels last: 16 bits on CUDA, bf16 on the CPU (fp16 on the
    CPU, emulated, keeps the usual layout). On a 2-core CPU with native bf16 the registered
    generators ran 9-23% faster channels last, at batch 1 and 4 (``docs/inference.md``)."""
    if device.type == "cuda":
        return dtype != torch.float32
    return device.type == "cpu" and dtype == torch.bfloat16


class _CompiledOrEager:
    """``torch.compile(generator)``, or the generator itself once compilation has failed.

    Compilation happens on the first call (and again for a new input size); any failure of
    it (no C++ compiler, an unsupported operation) falls back to eager with one warning."""

    def __init__(self, generator: nn.Module) -> None:
        self.generator = generator
        self.compiled: Callable[[Tensor], Tensor] | None = None
        try:
            self.compiled = torch.compile(generator, mode="max-autotune-no-cudagraphs"
                                          if torch.cuda.is_available() else "default")
        except Exception as exc:  # any failure means: run eagerly
            self._fall_back(exc)

    def _fall_back(self, exc: BaseException) -> None:
        self.compiled = None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warnings.warn(f"--compile: compiling the generator failed ({first[:200]}); running "
                      "it without compilation", CompileFallbackWarning, stacklevel=2)

    def __call__(self, images: Tensor) -> Tensor:
        if self.compiled is None:
            return self.generator(images)
        try:
            return self.compiled(images)
        except Exception as exc:  # the compiler's errors have many classes
            # An error of the images themselves comes back from the eager call below.
            self._fall_back(exc)
            return self.generator(images)
