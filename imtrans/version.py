"""The installed version of imtrans (from the package metadata)."""

from __future__ import annotations

import importlib.metadata

try:
    __version__ = importlib.metadata.version("imtrans")
except importlib.metadata.PackageNotFoundError:  # running from a source tree not installed
    __version__ = "0.0.0+unknown"
