"""The install instructions agree with the package: README.md and docs/quickstart.md state the
torch and torchvision floors of pyproject.toml's dependencies (so they cannot drift apart), and
both show the CPU-only install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "quickstart.md"]
CPU_INSTALL = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
#: "torch 2.11 or newer", "PyTorch 2.11 or newer"; "torchvision (0.26 or newer)".
STATED = {"torch": r"\b(?:PyTorch|torch) (\d+(?:\.\d+)+) or newer",
          "torchvision": r"\btorchvision \(?(\d+(?:\.\d+)+) or newer"}


def floor(package: str) -> str:
    """The ``>=`` floor of ``package`` in pyproject.toml's dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for spec in project["dependencies"]:
        found = re.fullmatch(rf"{package}\s*>=\s*(\d+(?:\.\d+)*)", spec.split(";")[0].strip())
        if found:
            return found.group(1)
    raise AssertionError(f"pyproject.toml's dependencies give {package} no >= floor")


def short(version: str) -> str:
    """A version without trailing zero parts, as prose states it: 2.11.0 -> 2.11."""
    parts = version.split(".")
    while len(parts) > 2 and parts[-1] == "0":
        parts.pop()
    return ".".join(parts)


def stated_floors(text: str, package: str) -> list[str]:
    """Every "<package> X or newer" the text states, line breaks read as spaces."""
    return re.findall(STATED[package], " ".join(text.split()))


def test_the_floor_reader_sees_a_stale_statement() -> None:
    stale = "imtrans needs PyTorch 2.5.1 or\nnewer (with torchvision 0.26 or newer)"
    assert stated_floors(stale, "torch") == ["2.5.1"]
    assert stated_floors(stale, "torchvision") == ["0.26"]
    assert short("2.11.0") == "2.11" and short("0.26.1") == "0.26.1"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
@pytest.mark.parametrize("package", ["torch", "torchvision"])
def test_the_docs_state_pyprojects_floor(doc: Path, package: str) -> None:
    text = doc.read_text(encoding="utf-8")
    stated = stated_floors(text, package)
    assert stated, f"{doc.name} does not say which {package} it needs"
    assert set(stated) == {short(floor(package))}, (
        f"{doc.name} states {package} {stated}, pyproject.toml requires "
        f">={floor(package)}")
    # The floor is also the release CI tests, named exactly.
    assert f"CI tests torch {floor('torch')} and " in " ".join(text.split())


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_the_docs_show_the_cpu_only_install(doc: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    with_cpu = [block for block in blocks if CPU_INSTALL in block]
    assert with_cpu, f"{doc.name} does not show the CPU-only install"
    for block in with_cpu:  # torch first, then the project, which keeps that torch
        assert block.index(CPU_INSTALL) < block.index("pip install -e .")


def test_the_readme_opens_with_the_two_setup_lines_then_the_cpu_variant() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"),
                        re.S)
    setup = blocks[0].splitlines()
    assert len(setup) == 2 and "pip install -e . && imtrans run" in setup[0]
    assert "python -m pytest" in setup[1]
    assert CPU_INSTALL in blocks[1]
