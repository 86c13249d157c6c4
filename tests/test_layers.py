"""The package's floors (docs/architecture.md) hold: the import-linter contract of
pyproject.toml passes, no import cycle exists, and every module stands on a floor.

Imports made inside functions and under ``TYPE_CHECKING`` count, as the contract says.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
#: Modules of the package root that stand on no floor: the root itself, ``python -m imtrans``
#: and a stable name kept importable where it was (it only re-exports).
OFF_THE_FLOORS = {"imtrans", "imtrans.__main__", "imtrans.contracts"}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("imtrans", include_external_packages=False,
                             exclude_type_checking_imports=False, cache_dir=None)


def floors() -> list[list[str]]:
    """The layers of the contract, top first, each a list of its packages."""
    (contract,) = [c for c in CONFIG["importlinter"]["contracts"] if c["type"] == "layers"]
    return [[name.strip() for name in layer.replace("|", ":").split(":")]
            for layer in contract["layers"]]


def floor_of(module: str) -> int | None:
    for index, layer in enumerate(floors()):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return index
    return None


def test_the_import_contract_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert lint_imports(no_cache=True, no_logo=True) == 0, (
        "an import breaks the floors of docs/architecture.md; run `lint-imports` for the list")


def test_function_local_and_type_checking_imports_count() -> None:
    settings = CONFIG["importlinter"]
    assert settings["exclude_type_checking_imports"] is False
    assert settings["root_package"] == "imtrans"


def test_there_is_no_import_cycle(graph: grimp.ImportGraph) -> None:
    cycles = strongly_connected(graph)
    assert cycles == [], f"{len(cycles)} import cycles: {cycles}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above could pass by finding nothing: it finds a planted cycle."""
    planted = grimp.ImportGraph()
    for module in ("a", "a.x", "a.y", "a.z"):
        planted.add_module(module)
    planted.add_import(importer="a.x", imported="a.y")
    planted.add_import(importer="a.y", imported="a.x")
    planted.add_import(importer="a.z", imported="a.x")
    assert strongly_connected(planted) == [["a.x", "a.y"]]


def test_every_module_stands_on_a_floor(graph: grimp.ImportGraph) -> None:
    homeless = sorted(m for m in graph.modules
                      if floor_of(m) is None and m not in OFF_THE_FLOORS)
    assert homeless == [], f"modules on no floor of pyproject.toml's contract: {homeless}"


def test_the_floors_are_in_the_folder_names() -> None:
    """Each layer of the contract names packages and top-level modules that exist."""
    for layer in floors():
        for name in layer:
            path = ROOT / name.replace(".", "/")
            assert path.is_dir() or path.with_suffix(".py").is_file(), name


def test_the_bottom_floor_imports_only_errors_of_the_package(graph: grimp.ImportGraph) -> None:
    outside = sorted(
        (module, imported) for module in graph.modules if module.startswith("imtrans.core.")
        for imported in graph.find_modules_directly_imported_by(module)
        if not imported.startswith("imtrans.core") and imported != "imtrans.errors")
    assert outside == []


def test_importing_the_recipe_schema_loads_no_component() -> None:
    code = ("import sys, imtrans.recipe.schema\n"
            "print('\\n'.join(sorted(m for m in sys.modules\n"
            "                         if m.startswith(('imtrans', 'torch')))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout.split()
    assert "imtrans.recipe.schema" in loaded  # the probe sees what it imports
    heavy = [m for m in loaded if m.startswith(("torch", "imtrans.trainers", "imtrans.nn",
                                                "imtrans.losses", "imtrans.catalogue.builtin",
                                                "imtrans.training", "imtrans.data"))]
    assert heavy == []


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected groups of more than one module
    (Tarjan's algorithm, iterative), each sorted, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(
                        child)))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)
