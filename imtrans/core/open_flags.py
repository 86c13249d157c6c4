"""``os.open`` flags that not every platform has, as 0 where it lacks them.

Windows has no ``O_NOFOLLOW``, ``O_NONBLOCK`` or ``O_CLOEXEC``, and ``os.open`` there opens in
text mode unless given ``O_BINARY`` (which only Windows has): bytes written through such a
descriptor gain a carriage return before each newline byte. Each caller says what it does
where a flag is missing (``imtrans.runs.file_access``: links refused from ``lstat`` instead of
by ``O_NOFOLLOW``).

Example:
    >>> open_flags("O_NOFOLLOW", "O_BINARY") == (os.O_NOFOLLOW if os.name == "posix"
    ...                                           else os.O_BINARY)
    True
"""

from __future__ import annotations

import os

__all__ = ["open_flags"]


def open_flags(*names: str) -> int:
    """The ``os.O_*`` flags of these names that this platform has, combined (0 for each one
    it lacks). Read when called, not at import."""
    combined = 0
    for name in names:
        combined |= int(getattr(os, name, 0))
    return combined
