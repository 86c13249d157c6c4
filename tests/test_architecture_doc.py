"""docs/architecture.md names every module of the package, under the floor it stands on.

Its "Every module" section is generated from the modules' docstrings (the first sentence of
each); run ``python tests/test_architecture_doc.py`` to rewrite it after adding, moving or
redescribing a module.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "imtrans"
BEGIN = "<!-- module index: generated -->"
END = "<!-- end of module index -->"


def first_sentence(path: Path) -> str:
    """The first sentence of the module's docstring, on one line."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    paragraph = " ".join(docstring.split("\n\n")[0].split())
    match = re.match(r"(.+?[.])(\s|$)", paragraph)
    sentence = match.group(1) if match else paragraph
    sentence = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", sentence)  # Sphinx roles, as code
    return sentence.replace("``", "`").replace("|", "\\|")


def module_index() -> str:
    """The generated section: one table per top-level package, one row per module."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        group = relative.parts[0] if len(relative.parts) > 1 else "(package root)"
        groups.setdefault(group, []).append(relative)
    lines = []
    for group, paths in groups.items():
        lines += ["", f"**{group}**", "", "| module | what it is |", "| --- | --- |"]
        lines += [f"| `{p.as_posix()}` | {first_sentence(PACKAGE / p) or '(no docstring)'} |"
                  for p in paths]
    return "\n".join(lines) + "\n"


def current_index() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def test_the_module_index_is_up_to_date() -> None:
    assert current_index() == module_index(), (
        "docs/architecture.md's module index is out of date: python tests/test_architecture_doc.py")


def test_every_module_has_a_docstring() -> None:
    missing = [p.relative_to(PACKAGE).as_posix() for p in sorted(PACKAGE.rglob("*.py"))
               if not first_sentence(p)]
    assert missing == []


def test_every_floor_package_is_described_in_prose() -> None:
    prose = DOC.read_text(encoding="utf-8").split(BEGIN, 1)[0]
    packages = sorted(p.name for p in PACKAGE.iterdir()
                      if p.is_dir() and (p / "__init__.py").exists())
    assert [name for name in packages if f"`{name}/`" not in prose] == []


if __name__ == "__main__":
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(head + BEGIN + module_index() + END + tail, encoding="utf-8")
    sys.exit(0)
