"""The command line starts light: ``imtrans --help``, ``--version`` and a command's ``--help``
import no torch (nor torchvision, kornia, albumentations), which alone take seconds to load;
each command imports what it needs when it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "kornia", "albumentations")
#: Runs ``imtrans ARGS...`` as ``python -m imtrans`` does, then names the heavy packages loaded
#: (from an atexit handler: the command line ends its process itself).
PROBE = """
import atexit, runpy, sys
sys.argv = ["imtrans", *sys.argv[1:]]
atexit.register(lambda: print("loaded:", sorted(
    name for name in sys.modules if name.split(".")[0] in {heavy!r})))
runpy.run_module("imtrans", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["run", "--help"],
                                  ["validate", "--help"], ["list", "--help"]],
                         ids=lambda args: " ".join(args))
def test_help_and_version_import_no_torch(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=set(HEAVY)), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    assert "imtrans" in proc.stdout  # the probe ran the command line
    assert proc.stdout.splitlines()[-1] == "loaded: []"
