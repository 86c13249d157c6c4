"""Benchmark a recipe's training step: throughput, step-time percentiles, data wait, FLOPs.

The trainer, networks, losses, ``[speed]`` switches and data are built by
:func:`imtrans.training.build.build_training`, as for training; then ``warmup`` steps absorb
compilation and allocator growth, and ``steps`` steps of the real ``trainer.training_step``
are timed. Nothing is written to disk.

Example:
    >>> from imtrans.catalogue.recipe_loader import load_recipe
    >>> recipe = load_recipe("recipes/pix2pix_edges2shoes.toml", [
    ...     "generator.name=unet", "generator.num_downs=5", "generator.ngf=4",
    ...     "discriminator.ndf=4", "data.load_size=36", "data.crop_size=32", "run.device=cpu"])
    >>> result = benchmark(recipe, steps=2, warmup=1, synthetic=True)
    >>> result["settings"]["image_size"], result["images_per_sec"] > 0
    ([32, 32], True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from imtrans.catalogue.plugins import Components, components
from imtrans.core.device import seed_everything, select_device
from imtrans.core.distributed import Distributed
from imtrans.core.observer import TrainingObserver
from imtrans.data.batches import TrainingData
from imtrans.recipe import Recipe
from imtrans.trainers.base import set_train_mode
from imtrans.training.build import Training, build_training
from imtrans.training.threads import torch_threads, training_threads
from imtrans.version import __version__

__all__ = ["benchmark"]


def benchmark(recipe: Recipe, *, steps: int = 20, warmup: int = 5, synthetic: bool = False,
              registry: Components | None = None, observer: TrainingObserver | None = None,
              flops_per_image: float | None = None, ddp: Distributed | None = None
              ) -> dict[str, Any]:
    """Time ``steps`` training steps of ``recipe`` after ``warmup`` untimed ones.

    Args:
        recipe: A validated recipe (its ``[speed]`` table applies).
        steps: Timed steps (>= 1).
        warmup: Untimed steps first (compilation, cuDNN autotuning, allocator growth).
        synthetic: Random images on the device instead of the recipe's data.
        registry: The components (default: built-ins and installed plugins).
        observer: Receives notices such as the bundled-sample fallback (default: silent).
        flops_per_image: The count of an earlier run of the same networks and image size,
            reused: counting builds an fp32 eager copy and runs a full step of it, which at
            a large batch costs time and memory (``imtrans bench --suite`` counts once).
        ddp: This process's place among several (default: one process, no DDP wrapper).

    Returns:
        One flat record (see ``docs/training.md``, Benchmarking): ``images_per_sec``,
        ``step_ms_p50/p90/p99``, ``data_wait_fraction``, ``peak_memory_bytes``,
        ``warmup_seconds``, ``flops_per_image``, ``achieved_tflops``, versions and settings.

    Raises:
        ImtransError: as training would (bad data, a switch the device lacks, ...).
    """
    registry = registry or components()
    observer = observer or TrainingObserver()
    device = select_device(recipe.run.device, observer)
    seed_everything(recipe.run.seed)
    if ddp is not None:
        device = ddp.device
    training = build_training(recipe, registry, device=device, data=not synthetic,
                              observer=observer, ddp=ddp)
    # The threads a run of this recipe trains with (run.threads), so the step times are its.
    threads = training_threads(recipe.run.threads, training.data,
                               ddp.world_size if ddp is not None else 1)
    observer.message(threads.notice)
    with torch_threads(threads):
        result = _time_steps(recipe, training, registry, device, steps=steps, warmup=warmup,
                             synthetic=synthetic, flops_per_image=flops_per_image)
    result["settings"]["threads"] = threads.threads
    return result


def _time_steps(recipe: Recipe, training: Training, registry: Components,
                device: torch.device, *, steps: int, warmup: int, synthetic: bool,
                flops_per_image: float | None) -> dict[str, Any]:
    """The record of :func:`benchmark`: ``warmup`` untimed steps, then ``steps`` timed."""
    data, trainer, step = training.data, training.trainer, training.step
    assert step is not None
    batches = _synthetic_batches(recipe, device) if data is None else _endless(data)
    first = next(batches)
    batch_size, image_size = first["A"].shape[0], list(first["A"].shape[-2:])
    if flops_per_image is None:
        flops_per_image = _count_flops(recipe, registry, device, first) / batch_size
    set_train_mode(trainer)
    cuda = device.type == "cuda"
    started = time.perf_counter()
    for _ in range(warmup):
        step(next(batches))
    _sync(device)
    warmup_seconds = time.perf_counter() - started
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    waited = 0.0
    marks: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []  # on CUDA
    step_ms: list[float] = []  # on the CPU
    started = time.perf_counter()
    for _ in range(steps):
        asked = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - asked
        # CUDA events time the step on the GPU without a per-step host sync, so the host
        # keeps queueing work (and fetching the next batch) as training does.
        if cuda:
            begin = _event()
            step(batch)
            marks.append((begin, _event()))
        else:
            begin_s = time.perf_counter()
            step(batch)
            step_ms.append(1000 * (time.perf_counter() - begin_s))
    _sync(device)
    total = time.perf_counter() - started
    step_ms = sorted(step_ms + [b.elapsed_time(e) for b, e in marks])
    images_per_sec = steps * batch_size / total
    speed = recipe.speed
    return {
        "images_per_sec": images_per_sec,
        "step_ms_p50": _percentile(step_ms, 50),
        "step_ms_p90": _percentile(step_ms, 90),
        "step_ms_p99": _percentile(step_ms, 99),
        "data_wait_fraction": waited / total,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
        # Part of the peak: the images held on the device (data.cache), 0 when streamed.
        "data_cache_bytes": data.cache.nbytes if data is not None and data.cache else 0,
        "warmup_seconds": warmup_seconds,
        "flops_per_image": flops_per_image,
        "achieved_tflops": flops_per_image * images_per_sec / 1e12,
        "device": torch.cuda.get_device_name(device) if cuda else _cpu_name(),
        "torch": torch.__version__,
        "imtrans": __version__,
        "settings": {
            "trainer": recipe.trainer.name, "generator": recipe.generator.name,
            "batch_size": batch_size, "image_size": image_size, "precision": speed.precision,
            "channels_last": speed.channels_last, "fused_adam": speed.fused_adam,
            "compile": speed.compile, "cuda_graphs": speed.cuda_graphs,
            "synthetic": synthetic, "augment": recipe.data.augment,
            "data_cache": data is not None and data.cache is not None,
            "num_workers": recipe.data.num_workers, "steps": steps, "warmup": warmup,
            "device": str(device),
        },
    }


def _count_flops(recipe: Recipe, registry: Components, device: torch.device,
                 batch: dict[str, Tensor]) -> int:
    """FLOPs of one full training step (forward and backward of every network), counted on
    a plain fp32 eager copy: compiled kernels bypass the counter, and precision and memory
    format change how fast the operations run, not how many there are."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the timed trainer's stream stays as seeded
        trainer = build_training(recipe, registry, device=device, data=False, speed=False).trainer
        set_train_mode(trainer)
        with FlopCounterMode(display=False) as counter:
            trainer.training_step(batch)
    del trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return counter.get_total_flops()


def _endless(data: TrainingData) -> Iterator[dict[str, Tensor]]:
    """The recipe's batches on the device as the fit loop takes them, epoch after epoch."""
    epoch = 0
    while True:
        data.batches.set_epoch(epoch)
        yield from data.batches
        epoch += 1


def _synthetic_batches(recipe: Recipe, device: torch.device) -> Iterator[dict[str, Tensor]]:
    """Random images in [-1, 1] of the recipe's batch and crop size, made once on ``device``
    and repeated: the step alone, with no data cost."""
    kwargs = recipe.data.kwargs
    size = int(kwargs.get("crop_size", kwargs.get("load_size", 256)))
    a, b = recipe.data.channels()
    n = recipe.data.batch_size
    generator = torch.Generator().manual_seed(recipe.run.seed)
    pool = [{"A": (torch.rand(n, a, size, size, generator=generator) * 2 - 1).to(device),
             "B": (torch.rand(n, b, size, size, generator=generator) * 2 - 1).to(device)}
            for _ in range(2)]
    index = 0
    while True:
        yield pool[index % len(pool)]
        index += 1


def _event() -> torch.cuda.Event:
    """A timing event recorded now on the current stream."""
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _percentile(sorted_values: list[float], percent: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _cpu_name() -> str:
    import platform

    return f"cpu ({platform.machine() or 'unknown'})"
