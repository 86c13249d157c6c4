"""The ``[speed]`` switches (bf16, channels_last, fused Adam, torch.compile, CUDA graphs),
applied in one place.

:func:`apply_speed` is called once, by :func:`imtrans.training.build.build_training`, after the
networks are built and before the trainer creates its optimisers. It changes each network in place
rather than wrapping it, so parameter names, checkpoints and ``trainer.modules()`` stay exactly
those of an fp32 eager run: a checkpoint trained with any switch loads without it.

Each network's forward becomes: inputs to channels_last (when on), the original forward (compiled
when on) under bf16 autocast (when on), and outputs cast back to fp32. So the trainers need no
change and every trainer, a plugin's included, gets the switches: the losses (GAN losses, L1)
always see fp32 tensors, where bf16's 8-bit mantissa would lose the small differences they
measure, while the convolutions, where the time goes, run in bf16.

Example:
    >>> from torch import nn
    >>> from imtrans.recipe import SpeedTable
    >>> networks = {"gen": nn.Conv2d(3, 3, 1)}
    >>> apply_speed(networks, SpeedTable(precision="bf16"), torch.device("cpu"))
    >>> networks["gen"](torch.zeros(1, 3, 4, 4)).dtype  # bf16 inside, fp32 out
    torch.float32
"""

from __future__ import annotations

import contextlib
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from imtrans.errors import RecipeError

if TYPE_CHECKING:
    from imtrans.recipe import SpeedTable

__all__ = ["apply_speed", "check_speed", "compiler_settings"]

#: The installed torch's (major, minor) release.
_TORCH_RELEASE = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])

#: The first torch whose CPU compiler builds a vectorised tile load with a computed index
#: (see :func:`compiler_settings`).
_CPU_TILE_FIXED = (2, 13)


@dataclass(frozen=True)
class _NetworkSpeed:
    """What a network's forward does besides the network's own forward."""

    bf16: bool
    channels_last: bool
    compile_mode: str | None  # None: eager
    clone_outputs: bool       # CUDA graphs reuse their output memory on the next replay


def check_speed(speed: SpeedTable, device: torch.device) -> None:
    """Refuse switches ``device`` cannot honour, before anything is built or written.

    Raises:
        RecipeError: ``cuda_graphs`` off CUDA, ``bf16`` on a GPU without bf16, ``compile =
            "step"`` on a torch whose compiler cannot take a backward, or ``fused_adam`` on a
            device without the fused kernel.
    """
    if speed.cuda_graphs and device.type != "cuda":
        raise RecipeError(
            f"speed.cuda_graphs = true needs a CUDA device, but the run is on {device.type!r}; "
            "set speed.cuda_graphs = false (or run.device = \"cuda\" on a machine with a GPU)")
    if speed.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RecipeError(f'speed.precision = "bf16", but {torch.cuda.get_device_name(device)} '
                          'has no bf16 support; use precision = "fp32"')
    if speed.compile == "step" and not _compiler_traces_backward():
        raise RecipeError(
            f'speed.compile = "step": unsupported on torch {_release_text()}: needs torch >= '
            "2.11, whose compiler traces backward calls (torch._dynamo.config."
            'trace_autograd_ops); use speed.compile = "networks"')
    if speed.fused_adam:
        # Adam(fused=True) checks the device only at its first step; torch's own list (no
        # public API yet) lets a run stop before anything is written.
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        supported = _get_fused_kernels_supported_devices()
        if device.type not in supported:
            raise RecipeError(
                f"speed.fused_adam = true: torch {torch.__version__} has no fused Adam on "
                f"{device.type!r} (only on {', '.join(supported)}); set it to false")


def _compiler_traces_backward() -> bool:
    """Whether torch's compiler can take ``backward()`` calls into a graph."""
    return hasattr(torch._dynamo.config, "trace_autograd_ops")


def _release_text() -> str:
    """The installed torch's release without its build tag (``2.11.0``, not ``2.11.0+cu130``)."""
    return torch.__version__.split("+")[0]


def compiler_settings(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The inductor settings a compile for ``device`` runs under: none but on the CPU with a
    torch before 2.13, which builds no vectorised kernels there.

    Those releases' CPU code generator turns a load whose index is read from a tensor (the
    image pool's query of its stored images, in a whole-step compile) into a 2-D vectorised
    tile that uses the index before declaring it: the C++ compiler fails (``CppCompileError``,
    "'tmp6' was not declared in this scope"; seen with CycleGAN at batch 1 on torch 2.11;
    2.13's generator refuses such a tile). Scalar kernels have no tile, so they compile, more
    slowly; GPUs use other kernels and keep every setting.

    Example:
        >>> compiler_settings(torch.device("cuda"))  # doctest: +ELLIPSIS
        <contextlib.nullcontext object at ...>
    """
    if device.type != "cpu" or _TORCH_RELEASE >= _CPU_TILE_FIXED:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch({"cpp.simdlen": 0})  # 0: no vector width, scalar loops


def apply_speed(networks: dict[str, nn.Module], speed: SpeedTable, device: torch.device
                ) -> None:
    """Apply the ``[speed]`` table to ``networks``, in place.

    ``speed.fused_adam`` is not applied here: it is the optimiser factory's setting (see
    :func:`imtrans.catalogue.assembly.optimizer_factory`), checked here with the rest.

    Raises:
        RecipeError: see :func:`check_speed`.
    """
    check_speed(speed, device)
    # A whole-step compile (imtrans.training.step) takes the networks' forwards into its graph:
    # they stay uncompiled here and keep only bf16 and channels_last.
    per_network = bool(speed.compile) and speed.compile != "step"
    graphs = speed.cuda_graphs and speed.compile != "step"
    mode = "reduce-overhead" if graphs else "default" if per_network else None
    settings = _NetworkSpeed(bf16=speed.precision == "bf16", channels_last=speed.channels_last,
                             compile_mode=mode, clone_outputs=graphs)
    if settings == _NetworkSpeed(False, False, None, False):
        return  # fp32 eager: leave the networks exactly as built
    for network in networks.values():
        if speed.channels_last:
            network.to(memory_format=torch.channels_last)
        network.__dict__["_imtrans_speed"] = settings  # plain attribute, not a submodule
        # An instance attribute wins over the class's forward; a bound method (not a closure)
        # so that copy.deepcopy rebinds it to the copy.
        network.forward = types.MethodType(_fast_forward, network)


def _fast_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """The network's own forward, with the speed settings around it."""
    settings: _NetworkSpeed = self._imtrans_speed  # type: ignore[assignment]
    if settings.channels_last:
        args = tuple(a.contiguous(memory_format=torch.channels_last)
                     if isinstance(a, Tensor) and a.dim() == 4 else a for a in args)
    autocast: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if settings.bf16:
        device_type = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        autocast = torch.autocast(device_type, dtype=torch.bfloat16)
    with autocast:
        if settings.compile_mode is None:  # a plain call: a whole-step compile traces it
            out = type(self).forward(self, *args, **kwargs)
        else:
            out = _forward_of(self, settings)(*args, **kwargs)
    return _to_fp32(out, clone=settings.clone_outputs)


def _forward_of(network: nn.Module, settings: _NetworkSpeed) -> Callable[..., Any]:
    """The class's forward bound to ``network``: compiled on first use when compiling."""
    plain = types.MethodType(type(network).forward, network)
    if settings.compile_mode is None:
        return plain
    # Kept with the weak reference of its owner: a deep copy of the network (periodic
    # evaluation translates with one) copies the attribute, sees it is not the owner and
    # compiles its own forward instead of calling the original's.
    owner, compiled = getattr(network, "_imtrans_compiled", (None, None))
    if compiled is None or owner is None or owner() is not network:
        compiled = torch.compile(plain, mode=settings.compile_mode)
        network.__dict__["_imtrans_compiled"] = (weakref.ref(network), compiled)
    return compiled


def _to_fp32(out: Any, *, clone: bool) -> Any:
    """bf16 outputs as fp32 (a copy); with CUDA graphs, fp32 outputs copied out of the graph's
    memory too, since the next replay overwrites it while the step still needs them."""
    if isinstance(out, Tensor):
        if out.is_floating_point() and out.dtype in (torch.bfloat16, torch.float16):
            return out.float()
        return out.clone() if clone else out
    if isinstance(out, list | tuple):
        return type(out)(_to_fp32(o, clone=clone) for o in out)
    if isinstance(out, dict):
        return {k: _to_fp32(v, clone=clone) for k, v in out.items()}
    return out
