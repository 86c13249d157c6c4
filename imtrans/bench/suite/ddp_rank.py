"""The rank of the suite's one-process DDP run: ``python -m imtrans.bench.suite.ddp_rank SPEC``.

Started by :func:`imtrans.bench.suite.ddp.run_ddp` under torchrun. ``imtrans run`` trains one
process without DDP (nothing to average), so this joins the process group itself (NCCL on a
GPU, gloo on the CPU) and wraps the networks in DistributedDataParallel even alone: what is
measured is the cost DDP adds to a step (gradient buckets, all-reduces, buffer broadcasts).

``SPEC`` is a JSON object: ``recipe`` (path), ``overrides`` (``--set`` strings), ``steps``,
``warmup``, ``flops_per_image`` (or null). The result is one line on stdout, after
:data:`MARK`: the benchmark record plus ``ddp`` (backend, world size), or ``{"error": ...}``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import torch
import torch.distributed as dist

from imtrans.core.distributed import TIMEOUT, Distributed, die_with_parent

__all__ = ["MARK", "main"]

#: Starts the result line, so that torchrun's and the libraries' own output cannot be taken
#: for it.
MARK = "IMTRANS_DDP_RESULT "


class _AlwaysWrapped(Distributed):
    """A :class:`Distributed` that wraps the networks in DDP even as the only process."""

    @property
    def enabled(self) -> bool:
        return True


def _join(device: torch.device) -> Distributed:
    """Join the one-process group torchrun describes, on ``device``'s kind of backend."""
    die_with_parent(signal.SIGTERM)  # torchrun killed at the deadline takes this rank along
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    return _AlwaysWrapped(rank, world, device, owned=True)


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    from imtrans.bench.timing import benchmark
    from imtrans.catalogue.plugins import components
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.core.device import select_device
    from imtrans.core.observer import TrainingObserver

    registry = components()
    recipe = load_recipe(spec["recipe"], spec["overrides"], registry=registry)
    ddp = _join(select_device(recipe.run.device, TrainingObserver()))
    try:
        result = benchmark(recipe, steps=spec["steps"], warmup=spec["warmup"],
                           registry=registry, flops_per_image=spec.get("flops_per_image"),
                           ddp=ddp)
        result["ddp"] = {"backend": dist.get_backend(), "world_size": dist.get_world_size()}
    finally:
        ddp.close()
    return result


def main(argv: list[str]) -> int:
    """Measure the spec of ``argv[0]``; print the result line; 0 on success, 1 on error."""
    try:
        result = _measure(json.loads(argv[0]))
    except Exception as exc:  # one line for the suite to report, whatever failed
        _report({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _report(result)
    return 0


def _report(record: dict[str, Any]) -> None:
    """The rank's one result line on stdout: the protocol the parent reads (not logging)."""
    sys.stdout.write(MARK + json.dumps(record) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
