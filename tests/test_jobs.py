"""Periodic jobs: the example of docs/training.md, run from the page, and the job contract."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "training.md"


def _examples() -> list[str]:
    section = DOC.read_text(encoding="utf-8").split("## From Python, and periodic jobs")[1]
    section = section.split("\n## ")[0]
    found = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "the section has no Python example"
    return found


def _example() -> str:
    """The periodic-job example."""
    return next(code for code in _examples() if "imtrans.Job" in code)


def _run(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> tuple[str, str, dict[str, object]]:
    """Run a page example from the project folder (it names recipes relative to it), writing
    its runs under ``tmp_path``; return the code run, what it printed and its namespace."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("IMTRANS_DISABLE_PLUGIN_AUTOLOAD", "1")
    code = code.replace('"run.device=cpu"]', f'"run.device=cpu", "run.output_dir={tmp_path}"]')
    printed = io.StringIO()
    namespace: dict[str, object] = {"__name__": "example"}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), namespace)
    return code, printed.getvalue(), namespace


def test_the_documented_notebook_observer_sees_every_record(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    code, printed, namespace = _run(
        next(code for code in _examples() if "TrainingObserver" in code), tmp_path, monkeypatch)
    want = re.search(r"print\(result\.step, curve\.steps\)  # (.*)", code)
    assert want is not None
    lines = printed.strip().splitlines()
    assert lines[-1] == want.group(1).strip()
    assert lines[0].startswith("step 1/4 (25%)  epoch 1/")  # the first progress line
    curve = namespace["curve"]
    assert len(curve.generator_loss) == 3 and all(v > 0 for v in curve.generator_loss)  # type: ignore[attr-defined]


def test_the_documented_job_sees_every_checkpoint_and_the_end(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    code, printed, namespace = _run(_example(), tmp_path, monkeypatch)
    want = re.search(r"print\(log\.seen, log\.ended_at\)  # (.*)", code)
    assert want is not None
    assert printed.strip() == want.group(1).strip()
    result = namespace["result"]
    assert result.step == 6  # type: ignore[attr-defined]
    assert sorted(os.listdir(tmp_path)) == ["pix2pix_edges2shoes"]
