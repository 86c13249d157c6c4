"""The folder imtrans keeps things it can make again: downloaded weights, computed ranges."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["user_cache_dir"]


def user_cache_dir() -> Path:
    """``$IMTRANS_CACHE_DIR``, else ``$XDG_CACHE_HOME/imtrans``, else ``~/.cache/imtrans``.

    Nothing is created here; writers make the sub-folder they need.
    """
    if os.environ.get("IMTRANS_CACHE_DIR"):
        return Path(os.environ["IMTRANS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "imtrans"
