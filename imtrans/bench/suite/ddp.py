"""The suite's one-process DDP run: torchrun starts :mod:`imtrans.bench.suite.ddp_rank`.

A subprocess, as a user's ``torchrun ... -m imtrans run`` is: a fresh interpreter that joins a
real process group (NCCL on a GPU, gloo on the CPU) through torchrun's rendezvous.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from imtrans.bench.suite.ddp_rank import MARK
from imtrans.core.distributed import die_with_parent
from imtrans.errors import ImtransError

__all__ = ["run_ddp"]


def run_ddp(recipe: Path, overrides: list[str], *, steps: int, warmup: int,
            flops_per_image: float | None, timeout_s: float) -> dict[str, Any]:
    """Benchmark ``recipe`` as the one rank of a DDP process group, under torchrun.

    Args:
        recipe: The recipe file.
        overrides: Its ``--set`` strings.
        steps: Timed steps.
        warmup: Untimed steps first.
        flops_per_image: An earlier count to reuse (None: the rank counts).
        timeout_s: torchrun is stopped after this long (the suite's deadline).

    Returns:
        The benchmark record plus ``ddp`` (``backend``, ``world_size``).

    Raises:
        ImtransError: the rank failed (its error), or gave no result (torchrun's last words).
    """
    spec = json.dumps({"recipe": str(recipe), "overrides": overrides, "steps": steps,
                       "warmup": warmup, "flops_per_image": flops_per_image})
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=1", "-m", "imtrans.bench.suite.ddp_rank", spec]
    try:
        # Windows refuses any preexec_fn (and has no prctl to call in one).
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              preexec_fn=(lambda: die_with_parent(signal.SIGTERM))
                              if sys.platform != "win32" else None)
    except subprocess.TimeoutExpired:
        raise ImtransError(f"the DDP run took over {timeout_s:.0f} s (the deadline) and was "
                           "stopped") from None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARK):
            result: dict[str, Any] = json.loads(line[len(MARK):])
            if "error" in result:
                raise ImtransError(f"the DDP rank failed: {result['error']}")
            return result
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    raise ImtransError(f"torchrun exited with {done.returncode} and no result: "
                       + " | ".join(tail))
