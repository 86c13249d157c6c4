"""Test-side only: every DDP rank writes a checksum of its trained weights to a file.

imtrans has no switch for this. ``tests/test_distributed.py`` starts training exactly as a user
does (``torchrun ... -m imtrans run`` or ``imtrans run --nproc 2``), with
:data:`CHECKSUM_DIR_ENV` naming a temporary folder and, on ``PYTHONPATH``, a folder holding a
``sitecustomize.py`` (written by :func:`write_site_hook`). Python imports that file at the start
of every process it starts; in the processes torchrun starts as ranks (``RANK`` is set) it calls
:func:`install`, which wraps, in that process only, two methods of
:class:`imtrans.core.distributed.Distributed`:

* ``wrap(networks)``, which receives the networks that train (before the DDP wrappers), and
* ``close()``, which every rank calls when training ends (finished or interrupted),

so that ``close`` first writes ``rank<N>.json``: the SHA-256 of the parameters of the networks
``wrap`` received (the same tensors the trainer trains) and the names hashed, in order (so
a test can hash a checkpoint's tensors the same way). Parameters
only: batch-norm running statistics are rank 0's at the start of each forward, then each rank's
own batch moves them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

#: The folder each rank writes ``rank<N>.json`` into; the hook does nothing without it.
CHECKSUM_DIR_ENV = "TEST_DDP_CHECKSUM_DIR"


def weights_digest(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 over each name and the raw bytes of its tensor, in the order given."""
    digest = hashlib.sha256()
    for name, tensor in named:
        digest.update(name.encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def named_parameters(networks: dict[str, torch.nn.Module]) -> list[tuple[str, torch.Tensor]]:
    """``network.parameter`` names with their tensors, networks sorted by name (DDP unwrapped,
    so the names are the ones checkpoints use after ``net.``)."""
    from imtrans.core.distributed import unwrap

    return [(f"{name}.{key}", tensor) for name, network in sorted(networks.items())
            for key, tensor in unwrap(network).named_parameters()]


def install(folder: Path) -> None:
    """Make this rank write ``folder/rank<RANK>.json`` when training ends (see the module doc)."""
    from imtrans.core.distributed import Distributed

    original_wrap, original_close = Distributed.wrap, Distributed.close
    trained: dict[str, torch.nn.Module] = {}

    def wrap(self: Distributed, networks: dict[str, torch.nn.Module]) -> Any:
        trained.update(networks)
        return original_wrap(self, networks)

    def close(self: Distributed, *args: Any, **kwargs: Any) -> Any:
        if self.enabled and trained:
            named = named_parameters(trained)
            record = {"rank": self.rank, "world_size": self.world_size,
                      "sha256": weights_digest(named), "parameters": [n for n, _ in named]}
            folder.mkdir(parents=True, exist_ok=True)
            part = folder / f"rank{self.rank}.json.part"
            part.write_text(json.dumps(record), encoding="utf-8")
            part.replace(folder / f"rank{self.rank}.json")
        return original_close(self, *args, **kwargs)

    Distributed.wrap = wrap  # type: ignore[method-assign]
    Distributed.close = close  # type: ignore[method-assign]


def install_from_environment() -> None:
    """What the ``sitecustomize`` hook runs: :func:`install` in a torchrun rank, when
    :data:`CHECKSUM_DIR_ENV` is set; nothing in any other process (torchrun, ``--nproc``)."""
    folder = os.environ.get(CHECKSUM_DIR_ENV)
    if folder and "RANK" in os.environ:
        install(Path(folder))


def write_site_hook(folder: Path) -> Path:
    """Write ``folder/sitecustomize.py``, which loads this file and calls
    :func:`install_from_environment`; return ``folder`` (to put on ``PYTHONPATH``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        '"""Written by tests/ddp_rank.py (test-side): see its module doc."""\n'
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('ddp_rank', {str(Path(__file__))!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "module.install_from_environment()\n",
        encoding="utf-8")
    return folder


def read_checksums(folder: Path) -> dict[int, dict[str, Any]]:
    """The records the ranks wrote into ``folder``, by rank."""
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("rank*.json"))]
    return {int(r["rank"]): r for r in records}
