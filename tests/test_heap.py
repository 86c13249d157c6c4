"""Freed memory kept in the C heap (`imtrans.core.heap`): with it, allocating a network's
activations again mostly faults no fresh pages; without it, glibc maps their blocks afresh; the
translate command turns it on, and systems without glibc's mallopt are left alone."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from imtrans.cli import cli
from imtrans.core import heap

pytestmark = pytest.mark.floor

glibc = pytest.mark.skipif(not sys.platform.startswith("linux")
                           or platform.libc_ver()[0] != "glibc"
                           or tuple(map(int, platform.libc_ver()[1].split(".")[:2])) < (2, 33),
                           reason="mallopt's thresholds and mallinfo2 are glibc's (2.33+)")

# Four 8.8 MB tensors (the size of the ResNet generator's last activation in bf16) allocated,
# written and freed ten times in a fresh process: the page faults of each round, and glibc's
# own account (mallinfo2) of the bytes it mapped for them and of its heap, during the first
# round and after it.
_ROUNDS = textwrap.dedent("""
    import ctypes, json, resource, sys, torch
    from imtrans.core.heap import keep_freed_memory

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
            .split())]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    faults, mapped, heap = [], [], []
    for _ in range(10):
        before, info = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, libc.mallinfo2()
        tensors = [torch.ones(1, 64, 262, 262, dtype=torch.bfloat16) for _ in range(4)]
        during = libc.mallinfo2()
        del tensors
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        mapped.append(during.hblkhd - info.hblkhd)
        heap.append(libc.mallinfo2().arena - info.arena)
    print(json.dumps({"applied": applied, "faults": faults, "mapped": mapped, "heap": heap}))
""")
_BLOCKS = 4 * 64 * 262 * 262 * 2


def _rounds(mode: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True,
                          text=True, check=True, timeout=120)
    return json.loads(done.stdout.splitlines()[-1])


@glibc
def test_kept_memory_is_reused_without_page_faults_and_glibc_s_own_is_not() -> None:
    kept = _rounds("keep")
    assert kept["applied"] is True
    # The blocks come from the heap (nothing mapped for them), which keeps them when freed.
    assert kept["mapped"][0] == 0 and kept["heap"][0] >= _BLOCKS
    # The first round faults their pages in (about 8,600). In the next few the heap may grow
    # again by a block or more (the small allocations made between rounds can split a freed
    # block, and which round that hits differs from machine to machine), but what it grows by
    # is kept too, so most rounds fault nothing (a few pages of Python's own objects aside) and
    # all nine together fault less than three first rounds. Freshly mapped blocks would fault
    # about 8,600 pages in every round.
    faults = kept["faults"]
    later = sorted(faults[1:])
    assert faults[0] > 8000, faults
    assert later[len(later) // 2] < faults[0] * 0.02 and sum(later) < 3 * faults[0], faults
    # Without it, glibc maps fresh pages for each block and unmaps them when it is freed:
    # the setting is what makes the difference.
    plain = _rounds("plain")
    assert plain["mapped"][0] >= _BLOCKS and plain["heap"][0] < _BLOCKS


def test_other_systems_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap.sys, "platform", "win32")
    assert heap.keep_freed_memory() is False
    monkeypatch.setattr(heap.sys, "platform", "darwin")
    assert heap.keep_freed_memory() is False


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoMallopt:
        def __init__(self, name: object) -> None:
            pass

    monkeypatch.setattr(heap.sys, "platform", "linux")
    monkeypatch.setattr(heap.ctypes, "CDLL", NoMallopt)
    assert heap.keep_freed_memory() is False


def test_translate_keeps_freed_memory_before_it_loads_the_generator(
        cyclegan_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imtrans.inference.translator as translator_module

    events: list[str] = []
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: events.append("keep") or True)
    loading = translator_module.load_translator

    def load(*args: object, **kwargs: object) -> object:
        events.append("load")
        return loading(*args, **kwargs)

    monkeypatch.setattr("imtrans.inference.load_translator", load)
    Image.new("RGB", (32, 32), (200, 90, 30)).save(tmp_path / "photo.png")
    result = CliRunner().invoke(cli, ["translate", str(cyclegan_run), str(tmp_path / "photo.png"),
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert events == ["keep", "load"]
    assert (tmp_path / "out" / "photo.png").is_file()
