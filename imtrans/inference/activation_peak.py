"""The largest layer of a generator, in values, for the memory budget; measured once per
network shape and kept in the user cache.

Measuring runs the network on the meta device (shapes only). That takes milliseconds, but
the first meta operation of a process imports torch's compiler stack (sympy and
``torch._dynamo``): about 1.25 s of a 4.4 s ``imtrans translate`` start on a 2-core CPU, more
than translating four photos in bf16. The count depends only on the network's structure and
the input's size, so it is cached by those (``$IMTRANS_CACHE_DIR/activation_peaks``), and
later runs of the same model read one small file instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["cached_peak_activation_values", "peak_activation_values"]


def peak_activation_values(generator: nn.Module, channels: int, height: int,
                           width: int, batch: int = 1) -> int:
    """A lower bound of the values alive at once when ``generator`` runs on a batch of
    ``height x width`` images without gradients: the largest layer's input and output.

    The network runs on the meta device (shapes only: no memory, no compute), through
    ``functional_call`` with meta copies of its weights, so the network itself is untouched.
    Returns 0 when a layer has no meta kernel.
    """
    largest = [0]

    def count(module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
        if isinstance(output, torch.Tensor) and not any(module.children()):
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            alive = output.numel() + (first.numel() if first is not None else 0)
            largest[0] = max(largest[0], alive)

    state = {name: torch.empty(value.shape, dtype=value.dtype, device="meta")
             for name, value in [*generator.named_parameters(), *generator.named_buffers()]}
    hooks = [module.register_forward_hook(count) for module in generator.modules()]
    try:
        # Inside the try: a size whose element count overflows (--tile 1000000000) is a
        # RuntimeError here already, and gets no estimate like an op without a meta kernel.
        example = torch.empty(batch, channels, height, width, device="meta")
        with torch.no_grad():
            functional_call(generator, state, (example,))
    except (NotImplementedError, RuntimeError):
        return 0  # an operation without a meta kernel: no estimate, so nothing refused
    finally:
        for hook in hooks:
            hook.remove()
    return largest[0]


def network_fingerprint(generator: nn.Module) -> str:
    """A digest of what a generator's layer sizes depend on: its modules (their classes, the
    files that define them and those files' times, so an upgraded plugin is measured again),
    their settings as ``repr`` shows them, its weights' names, shapes and types, and torch's
    version."""
    digest = hashlib.sha256(f"{torch.__version__}\0{generator!r}\0".encode())
    classes = {type(module) for module in generator.modules()}
    for cls in sorted(classes, key=lambda cls: (cls.__module__, cls.__qualname__)):
        source = getattr(sys.modules.get(cls.__module__), "__file__", None)
        try:
            stamp = os.stat(source).st_mtime_ns if source else 0
        except OSError:
            stamp = 0
        digest.update(f"{cls.__module__}.{cls.__qualname__}\0{source}\0{stamp}\0".encode())
    for name, value in [*generator.named_parameters(), *generator.named_buffers()]:
        digest.update(f"{name}\0{tuple(value.shape)}\0{value.dtype}\0".encode())
    return digest.hexdigest()


def _cache_file(generator: nn.Module, channels: int, height: int, width: int,
                batch: int) -> Path:
    from imtrans.core.user_cache import user_cache_dir

    key = f"{network_fingerprint(generator)}\0{channels}\0{height}\0{width}\0{batch}"
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return user_cache_dir() / "activation_peaks" / f"{name}.json"


def cached_peak_activation_values(generator: nn.Module, channels: int, height: int,
                                  width: int, batch: int = 1) -> int:
    """:func:`peak_activation_values`, read from the user cache when this network shape was
    measured at this size before (a missing, damaged or unwritable cache only means
    measuring again)."""
    cache = _cache_file(generator, channels, height, width, batch)
    try:
        cached = json.loads(cache.read_text())["values"]
        if isinstance(cached, int) and cached >= 0:
            return cached
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no entry, or a damaged one: measured again
    values = peak_activation_values(generator, channels, height, width, batch)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({"values": values}))
        os.replace(partial, cache)
    except OSError:
        pass  # a read-only home only costs measuring again next time
    return values
