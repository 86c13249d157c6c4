"""No import cycles: every module of imtrans imports as the first imtrans module of a process.

A cycle (``a`` imports ``b``, which imports a name from ``a``) shows only in some import orders:
importing ``b`` first works, ``a`` first fails with "partially initialized module". So each
module is imported after every ``imtrans*`` entry is removed from ``sys.modules``, in one
interpreter (torch and other third-party modules stay loaded, which keeps it fast). The modules
are found on disk at test time, so modules added, moved or removed are covered as they are.
The installed plugin packages' modules are included when they are importable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Packages whose modules are checked: imtrans, and the plugin packages when installed.
PACKAGES = ("imtrans", "imtrans_cut", "imtrans_example_loss")

# Runs in a fresh interpreter: lists the modules without importing any, then imports each one
# into an import state holding no imtrans* module. Prints a JSON object.
SCRIPT = r"""
import importlib, importlib.util, json, pkgutil, sys, traceback

def walk(name, path):
    # Listing the files imports nothing (pkgutil.walk_packages would import the packages).
    found = [name]
    for info in pkgutil.iter_modules(path):
        child = f"{name}.{info.name}"
        if info.name == "__main__":
            continue  # importing it runs the command line; `python -m` is tested elsewhere
        if info.ispkg:
            found += walk(child, [f"{p}/{info.name}" for p in path])
        else:
            found.append(child)
    return found

def ours(module):
    return module.split(".")[0] in PACKAGES

PACKAGES = json.loads(sys.argv[1])
modules, missing = [], []
for package in PACKAGES:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        missing.append(package)
        continue
    modules += walk(package, list(spec.submodule_search_locations))

failures = {}
for module in modules:
    for loaded in [m for m in sys.modules if ours(m)]:
        del sys.modules[loaded]
    try:
        importlib.import_module(module)
    except BaseException as exc:  # SystemExit too: an import must not run anything
        frames = [f"{f.filename}:{f.lineno} {f.line}"
                  for f in traceback.extract_tb(exc.__traceback__)
                  if "importlib" not in f.filename]
        failures[module] = {"error": f"{type(exc).__name__}: {exc}", "frames": frames}
print(json.dumps({"modules": modules, "missing": missing, "failures": failures}))
"""


def import_each_first(packages: tuple[str, ...], cwd: Path, **env: str) -> dict:
    """Run :data:`SCRIPT` over ``packages``; return its report."""
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(packages)], cwd=cwd,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env}, capture_output=True,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def test_a_cycle_that_shows_in_one_import_order_only_is_found(tmp_path: Path) -> None:
    # a first: a defines X, imports b, b takes X from the half-built a: fine. b first: b
    # imports a, a asks the half-built b for Y, not defined yet: ImportError.
    package = tmp_path / "cyclepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("X = 1\nfrom cyclepkg.b import Y\n")
    (package / "b.py").write_text("from cyclepkg.a import X\nY = 2\n")
    report = import_each_first(("cyclepkg",), tmp_path)
    assert report["modules"] == ["cyclepkg", "cyclepkg.a", "cyclepkg.b"]
    assert list(report["failures"]) == ["cyclepkg.b"]
    assert "partially initialized module 'cyclepkg.b'" in report["failures"]["cyclepkg.b"][
        "error"]


def test_every_module_imports_first_in_a_fresh_import_state() -> None:
    report = import_each_first(PACKAGES, ROOT)
    modules, failures = report["modules"], report["failures"]
    assert "imtrans" not in report["missing"]
    # The walk found the package (not a vacuous pass): its core modules are among them.
    assert {"imtrans", "imtrans.core.registry", "imtrans.catalogue.plugins",
            "imtrans.training.loop"} <= set(modules), modules
    assert len(modules) == len(set(modules))
    shown = "\n\n".join(
        f"{name}: {f['error']}\n    " + "\n    ".join(f["frames"][-8:])
        for name, f in failures.items())
    print(f"imported {len(modules)} modules first; plugin packages not installed: "
          f"{', '.join(report['missing']) or 'none'}")
    assert not failures, f"{len(failures)} of {len(modules)} modules fail when imported " \
                         f"first:\n{shown}"
