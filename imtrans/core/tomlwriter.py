"""TOML text from recipes, through tomli-w (the standard library reads TOML but cannot write it).

:func:`dumps` writes whole tables (``recipe.toml``, ``imtrans validate --print``): any key
(``"café" = 1`` is quoted), strings, numbers (``nan`` and ``inf`` included), booleans, arrays,
nested tables and arrays of tables; what it writes, ``tomllib`` reads back equal. TOML has no
null: a ``None`` is a ``TypeError``, as before (a resolved recipe leaves unset values out).
:func:`toml_value` writes one value on one line, as ``--set KEY=VALUE`` and the component
reference spell it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomli_w

__all__ = ["dumps", "toml_value"]


def dumps(data: Mapping[str, Any]) -> str:
    """Serialise nested tables to TOML text that ``tomllib.loads`` reads back equal.

    Raises:
        TypeError: a value TOML cannot hold (``None``, an object), or a key that is not a
            string.

    Example:
        >>> print(dumps({"optim": {"lr": 0.0002, "betas": [0.5, 0.999]}}), end="")
        [optim]
        lr = 0.0002
        betas = [
            0.5,
            0.999,
        ]
    """
    return tomli_w.dumps(data)


def toml_value(value: Any) -> str:
    """One value in TOML syntax, on one line: ``true``, ``0.0002``, ``"text"``, ``[1, 2]``,
    ``{ a = 1 }``.

    Example:
        >>> print(toml_value(["café", 1.5, {"on": True}]))
        ["café", 1.5, { on = true }]

    Raises:
        TypeError: a value TOML cannot hold (``None``, an object).
    """
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(key)} = {toml_value(item)}"
                                for key, item in value.items()) + " }"
    # A scalar as tomli-w writes it; multiline_strings is off, so a newline is escaped.
    return tomli_w.dumps({"v": value}).removeprefix("v = ").removesuffix("\n")


def _key(key: str) -> str:
    """A key as tomli-w writes it: bare (``lr``) or quoted (``"café"``)."""
    return tomli_w.dumps({key: 0}).removesuffix(" = 0\n")
