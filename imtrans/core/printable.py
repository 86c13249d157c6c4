"""File names as text that can always be printed, logged or written to JSON.

A file name that is not valid UTF-8 (bytes such as ``\\xff``, common on disks written by other
systems) reaches Python as a ``str`` with surrogate escapes. Printing it to a UTF-8 console,
writing it to a log or ``json.dumps(..., ensure_ascii=False)`` raises ``UnicodeEncodeError``;
so every name imtrans shows or records goes through :func:`printable_path` first.
"""

from __future__ import annotations

import os

__all__ = ["printable_path"]


def printable_path(path: os.PathLike[str] | str | bytes) -> str:
    """``path`` as text that encodes to UTF-8; bytes that are not UTF-8 are shown as ``\\xff``.

    >>> printable_path(os.fsdecode(b"caf\\xe9.png"))
    'caf\\\\xe9.png'
    >>> printable_path("café.png")
    'café.png'
    >>> printable_path("lone \\ud800")
    'lone \\\\ud800'
    """
    text = os.fsdecode(path)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name decodes to (text, not a name)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")
