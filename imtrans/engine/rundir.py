"""The run directory: where a run writes its recipe, environment, metrics, samples, checkpoints.

    runs/<name>/
      recipe.toml        the fully resolved recipe (every default written out)
      environment.json   versions of python, torch, imtrans and every plugin; git commit
      metrics.jsonl      one record per logging interval
      samples/           sample grids (input | output | reconstruction) as PNG
      checkpoints/       safetensors checkpoints
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import torch

from imtrans.plugins import Components
from imtrans.tomlwriter import dumps
from imtrans.version import __version__

__all__ = ["create_run_dir", "latest_run_dir", "write_run_record"]


def create_run_dir(output_dir: Path, name: str) -> Path:
    """Make a new run directory ``output_dir/name``, or ``name-2``, ``name-3``... if taken."""
    output_dir.mkdir(parents=True, exist_ok=True)
    candidate, number = output_dir / name, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1
            candidate = output_dir / f"{name}-{number}"


def latest_run_dir(output_dir: Path, name: str) -> Path | None:
    """The most recent run directory of ``name`` (the highest ``-N`` suffix), if any."""
    pattern = re.compile(rf"{re.escape(name)}(?:-(\d+))?")
    found = []
    for path in output_dir.glob(f"{name}*"):
        match = pattern.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1) or 1), path))
    return max(found)[1] if found else None


def write_run_record(run_dir: Path, resolved: dict[str, Any], loaded: Components,
                     device: torch.device) -> dict[str, Any]:
    """Write ``recipe.toml`` and ``environment.json``; return the environment record."""
    (run_dir / "recipe.toml").write_text(dumps(resolved), encoding="utf-8")
    environment = {
        "imtrans": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "plugins": {p.name: {"distribution": p.distribution, "version": p.version}
                    for p in loaded.plugins},
        "git_commit": _git_commit(),
    }
    (run_dir / "environment.json").write_text(json.dumps(environment, indent=2) + "\n",
                                              encoding="utf-8")
    return environment


def _git_commit() -> str | None:
    """The commit of the current directory's git checkout, with ``+dirty`` if modified."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit
