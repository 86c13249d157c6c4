"""Nothing hangs and nothing outlives the command: data errors under loading processes, FIFOs
in data folders, a killed ``--nproc`` launcher, and process counts larger than the machine.

Every test runs ``imtrans`` as a subprocess with a hard timeout and checks through ``/proc``
that no process it started is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_crash_safety import all_gone, children_of, running

from imtrans.data.folders import AlignedDataset
from imtrans.data.images import find_images

ROOT = Path(__file__).resolve().parents[1]
PIX2PIX = str(ROOT / "recipes" / "pix2pix_edges2shoes.toml")
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
TINY = ["data.load_size=36", "data.crop_size=32", "generator.name=unet",
        "generator.num_downs=5", "generator.ngf=4", "discriminator.ndf=4", "run.device=cpu",
        "data.batch_size=1", "train.log_every=1", "train.sample_every=1000"]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="/proc, FIFOs and the parent-death signal are Linux's")


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    return env | {"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def pairs(folder: Path, count: int) -> Path:
    """``count`` aligned 40x80 noise images in ``folder``; return ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (40, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children...)."""
    found, todo = [], [pid]
    while todo:
        try:
            below = children_of(todo.pop())
        except FileNotFoundError:  # it exited meanwhile
            continue
        found += below
        todo += below
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def run_watched(args: list[str], timeout: float, **kwargs: object
                ) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """Run ``imtrans ARGS`` to its end within ``timeout`` seconds (killing its process group
    otherwise); return it and the imtrans processes it had started (loading processes, ranks:
    forks of it), seen while it ran. Other programs it runs (``ldconfig``...) are left out:
    between its fork and its exec such a child still shows imtrans's command line, for a few
    milliseconds or, on a loaded machine, long enough to be seen once. So a process counts
    when it was seen with imtrans's command line at two polls at least (50 ms apart); a
    loading process lives for the whole command."""
    proc = subprocess.Popen([sys.executable, "-m", "imtrans", *args], env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)  # type: ignore[call-overload]
    polls: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
                pytest.fail(f"imtrans {' '.join(args[:2])} still ran after {timeout} s "
                            f"(loading processes seen: {sorted(polls)}):\n{err[-3000:]}")
            for pid in descendants(proc.pid):
                if "imtrans" in command_line(pid):
                    polls[pid] = polls.get(pid, 0) + 1
            time.sleep(0.05)
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    seen = sorted(pid for pid, count in polls.items() if count >= 2)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), seen


def test_a_strict_error_in_a_loading_process_exits_at_once(tmp_path: Path) -> None:
    # The bad file sorts last, so training has started (and the workers are busy) when a
    # worker meets it.
    folder = pairs(tmp_path / "data" / "train", 12)
    (folder / "zzz_bad.png").write_bytes(b"not an image")
    args = ["run", PIX2PIX, *sets(*TINY, f"data.root={tmp_path / 'data'}", "data.strict=true",
                                  "data.num_workers=2", "train.max_steps=200",
                                  f"run.output_dir={tmp_path / 'runs'}")]
    done, seen = run_watched(args, timeout=90)
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "zzz_bad.png" in errors[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert len(seen) >= 2  # the loading processes ran
    assert all_gone(seen, 3.0), [p for p in seen if running(p)]


def test_a_strict_error_while_filling_the_device_cache_exits_at_once(tmp_path: Path) -> None:
    folder = pairs(tmp_path / "data" / "train", 12)
    (folder / "zzz_bad.png").write_bytes(b"not an image")
    args = ["run", PIX2PIX, *sets(*TINY, f"data.root={tmp_path / 'data'}", "data.strict=true",
                                  "data.num_workers=2", "data.cache=device",
                                  "train.max_steps=20", f"run.output_dir={tmp_path / 'runs'}")]
    done, seen = run_watched(args, timeout=90)
    assert done.returncode == 1, done.stderr[-3000:]
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert all_gone(seen, 3.0), [p for p in seen if running(p)]


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


class Blocked(BaseException):
    """Raised by :func:`within` in a call that blocks too long (not an OSError, which the
    dataset would take for an unusable file)."""


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Interrupt the block with :class:`Blocked` after ``seconds`` (SIGALRM: it interrupts
    a blocking ``open()`` too)."""
    def expire(signum: int, frame: object) -> None:
        raise Blocked(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_fifo_is_listed_never_opened_and_skipped(tmp_path: Path) -> None:
    folder = pairs(tmp_path / "train", 2)
    pipe = fifo(folder / "001b.png")
    assert pipe in find_images(folder)  # listed like any file, counted when it is skipped
    data = AlignedDataset(root=tmp_path, load_size=16, crop_size=16)
    with within(10), pytest.warns(UserWarning, match="not a regular file"):
        item = data[2]  # the FIFO (sorted after 001.png): the next file, 000.png, stands in
    assert item["A_path"] == str(folder / "000.png")
    assert data.skipped_paths == [pipe]


def test_training_from_a_folder_with_a_fifo_completes(tmp_path: Path) -> None:
    folder = pairs(tmp_path / "data" / "train", 4)
    pipe = fifo(folder / "001b.png")
    args = ["run", PIX2PIX, *sets(*TINY, f"data.root={tmp_path / 'data'}",
                                  "data.num_workers=2", "train.max_steps=6",
                                  f"run.output_dir={tmp_path / 'runs'}")]
    done, seen = run_watched(args, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warning: skipped 1 unusable image files" in done.stderr
    assert str(pipe) in " ".join(done.stderr.split())
    assert all_gone(seen, 3.0)


def test_translate_skips_a_fifo_and_counts_it(tmp_path: Path, pix2pix_run: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(inputs / "a.png")
    fifo(inputs / "b.jpg")
    done, seen = run_watched(["translate", str(pix2pix_run), str(inputs),
                              str(tmp_path / "out"), "--workers", "2"], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 1 image(s)" in done.stderr and "skipped 1 file(s) (1 unreadable)" in done.stderr
    assert "not a regular file" in done.stderr
    assert all_gone(seen, 3.0)
    # A glob and the FIFO named alone: skipped and counted, or refused with one line.
    done, _ = run_watched(["translate", str(pix2pix_run), str(inputs / "*"),
                           str(tmp_path / "out2")], timeout=120)
    assert done.returncode == 0 and "skipped 1 file(s) (1 unreadable)" in done.stderr, \
        done.stderr[-3000:]
    done, _ = run_watched(["translate", str(pix2pix_run), str(inputs / "b.jpg"),
                           str(tmp_path / "out3")], timeout=120)
    assert done.returncode == 1 and "not a regular file" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def ranks_started(launcher: int, count: int, timeout: float) -> list[int]:
    """Wait until ``launcher`` has torchrun and ``count`` ranks below it; return them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = descendants(launcher)
        ranks = [p for p in found if "imtrans" in command_line(p)
                 and "torch.distributed.run" not in command_line(p)]
        if len(ranks) >= count:
            return found
        time.sleep(0.1)
    pytest.fail("torchrun did not start its ranks")


def test_kill_9_of_an_nproc_launcher_leaves_no_process(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "imtrans", "run", CYCLEGAN, "--nproc", "2",
            *sets("data.load_size=36", "data.crop_size=32", "generator.ngf=4",
                  "discriminator.ndf=4", "run.device=cpu", "data.num_workers=0",
                  "train.max_steps=100000", "train.sample_every=100000",
                  f"run.output_dir={tmp_path / 'runs'}")]
    proc = subprocess.Popen(args, env=environment(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        below = ranks_started(proc.pid, 2, timeout=120)
        metrics = tmp_path / "runs" / "cyclegan_photo2monet" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        below = sorted(set(below) | set(descendants(proc.pid)))
        proc.kill()
        proc.wait()
        assert all_gone(below, 20.0), [p for p in below if running(p)]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


def test_a_rank_dies_with_its_parent(tmp_path: Path) -> None:
    # Each rank asks for SIGTERM when its parent (torchrun) dies: a torchrun killed outright
    # (not through the launcher) then leaves no rank training. The rank side alone.
    ready = tmp_path / "ready"
    code = ("import signal, sys, time\n"
            "from imtrans.core.distributed import die_with_parent\n"
            "die_with_parent(signal.SIGTERM)\n"
            "open(sys.argv[1], 'w').close()\n"
            "time.sleep(60)\n")
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time;"
         " p = subprocess.Popen([sys.executable, '-c', *sys.argv[1:]]);"
         " print(p.pid, flush=True); time.sleep(120)", code, str(ready)],
        env=environment() | {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"},
        stdout=subprocess.PIPE, text=True)
    child = -1
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert running(child) and time.monotonic() < deadline
            time.sleep(0.05)
        parent.kill()
        parent.wait()
        assert all_gone([child], 5.0), "the rank outlived its parent"
    finally:
        parent.kill()
        if child > 0 and running(child):
            os.kill(child, signal.SIGKILL)


def test_nproc_above_the_cores_is_refused_with_one_line(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    done, seen = run_watched(["run", CYCLEGAN, "--nproc", str(cores + 62),
                              *sets(f"run.output_dir={tmp_path / 'runs'}", "run.device=cpu")],
                             timeout=60)
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --nproc"), done.stderr
    assert f"{cores} usable CPU core" in lines[0]
    assert not seen  # refused before anything started
    assert not (tmp_path / "runs").exists()


def test_translate_workers_are_capped_by_the_cores(tmp_path: Path, pix2pix_run: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 64), (i * 60, 40, 40)).save(inputs / f"{i}.png")
    done, seen = run_watched(["translate", str(pix2pix_run), str(inputs), str(tmp_path / "out"),
                              "--workers", "500"], timeout=120)
    processes = len(seen)
    assert done.returncode == 0, done.stderr[-3000:]
    notes = [line for line in done.stderr.splitlines() if "--workers 500" in line]
    assert len(notes) == 1 and f"using {cores}" in notes[0], done.stderr
    assert "wrote 3 image(s)" in done.stderr
    assert processes <= cores
    assert all_gone(seen, 3.0)


def test_recipe_workers_are_capped_by_the_cores(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    pairs(tmp_path / "data" / "train", 4)
    args = ["run", PIX2PIX, *sets(*TINY, f"data.root={tmp_path / 'data'}",
                                  "data.num_workers=500", "train.max_steps=2",
                                  f"run.output_dir={tmp_path / 'runs'}")]
    done, seen = run_watched(args, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"data.num_workers = 500 is more than the {cores} usable CPU" in " ".join(
        done.stderr.split())
    assert len(seen) <= cores
    assert all_gone(seen, 3.0)
