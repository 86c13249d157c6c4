"""The type checker over the whole package (mypy, strict; settings in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_type_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
         "--no-error-summary", "--hide-error-context"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert "No module named mypy" not in proc.stderr, "mypy is in the dev extra: install it"
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
