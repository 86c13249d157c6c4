"""The component reference (docs/components.md), generated from the registries.

A test compares the file with this output, so the reference cannot drift from the code.
Regenerate it with ``python -m imtrans.catalogue.reference > docs/components.md``.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from imtrans.catalogue.plugins import KINDS, Components, load_components
from imtrans.core.registry import Entry, accepted_arguments
from imtrans.core.tomlwriter import toml_value

__all__ = ["component_reference"]

HEADER = """# Component reference

Every built-in component, by kind, with the arguments a recipe table may give it. Generated
from the registries by `python -m imtrans.catalogue.reference`; a test keeps this file in step
with the code.
Installed plugins add their own components: `imtrans list` shows everything that is loaded."""


def component_reference(loaded: Components) -> str:
    """Markdown describing every component in ``loaded``: summary, source and arguments."""
    parts = [HEADER]
    for kind, singular in KINDS.items():
        parts.append(f"\n## {kind.capitalize()}\n")
        for entry in loaded.registry(kind).entries():
            parts.append(_entry(entry, singular))
    return "\n".join(parts).rstrip() + "\n"


def _entry(entry: Entry, singular: str) -> str:
    lines = [f"### `{entry.name}`", "", f"{entry.summary} ({singular}, from `{entry.source}`)", ""]
    params = accepted_arguments(entry.builder)
    if not params:
        return "\n".join([*lines, "No arguments.", ""])
    hints = _hints(entry.builder)
    lines += ["| argument | type | default |", "|---|---|---|"]
    for name, param in params.items():
        default = "required" if param.default is param.empty else f"`{_toml(param.default)}`"
        kind = _type_name(hints.get(name, param.annotation))
        lines.append(f"| `{name}` | {kind} | {default} |")
    return "\n".join([*lines, ""])


def _toml(value: Any) -> str:
    """A default as a recipe would spell it (``true``, ``"instance"``); None as ``none``."""
    try:
        return "none" if value is None else toml_value(value)
    except TypeError:
        return repr(value)


def _hints(builder: Any) -> dict[str, Any]:
    target = builder.__init__ if inspect.isclass(builder) else builder
    try:
        return typing.get_type_hints(target)
    except Exception:
        return {}


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f'`"{v}"`' if isinstance(v, str) else f"`{v}`"
                            for v in typing.get_args(annotation))
    if isinstance(annotation, type):
        return f"`{annotation.__name__}`"
    return f"`{annotation}`".replace("|", "\\|")


if __name__ == "__main__":
    import sys

    sys.stdout.write(component_reference(load_components(autoload=False)))
