"""JSON from files imtrans did not necessarily write, with its nesting bounded.

``json.loads`` recurses once per nesting level: ``[[[[...]]]]`` 100000 deep in a checkpoint's
manifest or a result file raises ``RecursionError`` (a traceback, not a message), and a value
nested a few hundred levels deep parses but then breaks the code that walks it. Every such file
goes through :func:`loads_bounded`, which refuses both as a :class:`ValueError` that callers
already turn into their own one-line error.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JsonTooDeepError", "loads_bounded"]

#: Deepest nesting accepted. A checkpoint's manifest holds a recipe (itself at most 32 levels)
#: a few levels down; nothing imtrans writes comes near this.
MAX_JSON_DEPTH = 100


class JsonTooDeepError(ValueError):
    """JSON nested deeper than :data:`MAX_JSON_DEPTH` levels."""


def loads_bounded(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(text)``, refusing values nested more than ``max_depth`` levels.

    Raises:
        JsonTooDeepError: The nesting is deeper (a ``ValueError``).
        ValueError: ``text`` is not JSON (``json.JSONDecodeError``, bytes not UTF-8).

    >>> loads_bounded('{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> loads_bounded("[" * 200 + "]" * 200)
    Traceback (most recent call last):
    ...
    imtrans.core.jsonfile.JsonTooDeepError: JSON nested more than 100 levels deep
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonTooDeepError(f"JSON nested more than {max_depth} levels deep") from None
    # Measured without recursion: the walk itself must not be what overflows.
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise JsonTooDeepError(f"JSON nested more than {max_depth} levels deep")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return value
