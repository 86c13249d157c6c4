"""Kills, signals and a full disk lose nothing: checkpoints stay whole and resumes stay exact."""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from imtrans.core.atomic import TEMP_PREFIX
from imtrans.runs.checkpoints import files as checkpoint
from imtrans.runs.checkpoints.files import list_checkpoints, load_checkpoint
from imtrans.training.records import MetricsLog

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")

#: A tiny CycleGAN that saves a checkpoint after every step: kills land in steps, in metric
#: and sample writes, and (with the slowed writer below) often inside a checkpoint write.
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "run.device=cpu", "data.max_items=3", "trainer.pool_size=2", "schedule.n_epochs=20",
        "schedule.n_epochs_decay=20", "train.log_every=1", "train.sample_every=1000",
        "train.checkpoint_every=1", "train.keep_last=2", "run.name=kill", "data.num_workers=2"]

#: Training processes are forked from one server that has imported imtrans and torch once
#: (a fresh interpreter spends seconds on imports before it trains a step).
PRELOAD = ["torch", "albumentations", "kornia", "imtrans.cli", "imtrans.runner"]


def train_in_child(args: list[str], log: str, full_after: int) -> None:
    """One training process (a forkserver child): ``imtrans ARGS``, output to ``log``.

    Checkpoint files are written in 8 pieces 5 ms apart, so kills often land inside a write;
    the write after ``full_after`` checkpoints fails half-way with ENOSPC (-1: never).
    """
    torch.set_num_threads(1)  # tiny networks; and no thread pool shared with the server
    # Loading processes forked from this training process, as `imtrans run` makes them
    # (a forkserver child would otherwise start them from the server).
    multiprocessing.set_start_method("fork", force=True)
    for key in [k for k in os.environ if k.startswith("IMTRANS_")]:
        del os.environ[key]
    os.environ["IMTRANS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    written = 0

    def slow_write(path: Path, data: bytes) -> None:
        nonlocal written
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as handle:
            piece = max(1, len(data) // 8)
            for start in range(0, len(data), piece):
                if written == full_after and start >= len(data) // 2:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                handle.write(data[start:start + piece])
                handle.flush()
                time.sleep(0.005)
            os.fsync(handle.fileno())
        written += 1

    checkpoint._write_bytes = slow_write
    from imtrans.cli import main

    sys.argv = ["imtrans", *args]
    main()  # exits through SystemExit: the process's exit code


def start(args: list[str], log: Path, full_after: int = -1) -> multiprocessing.Process:
    """Start ``imtrans ARGS`` in a training process forked from the preloaded server."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    process = context.Process(target=train_in_child, args=(args, str(log), full_after))
    process.start()
    return process


def finish(args: list[str], log: Path, full_after: int = -1) -> tuple[int | None, str]:
    """Run ``imtrans ARGS`` to the end; return its exit code and output."""
    process = start(args, log, full_after)
    process.join(600)
    return process.exitcode, log.read_text()


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env["IMTRANS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # One thread: these networks are too small to share, and on a busy machine spinning
    # threads make each step many times slower.
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_args(output: Path, steps: int, *extra: str) -> list[str]:
    sets = [*TINY, f"run.output_dir={output}", f"train.max_steps={steps}", *extra]
    return ["run", CYCLEGAN, *[a for s in sets for a in ("--set", s)]]


def children_of(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def all_gone(pids: list[int], seconds: float = 3.0) -> bool:
    """Whether every process of ``pids`` ends within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(running(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def wait_for_a_write(process: multiprocessing.Process, checkpoints: Path) -> None:
    """Return once a checkpoint is being written in ``checkpoints`` (its temporary file
    exists); each write takes 40 ms or more, so polling every millisecond sees it."""
    deadline = time.monotonic() + 60
    while process.is_alive() and time.monotonic() < deadline:
        if any(checkpoints.glob(f"{TEMP_PREFIX}*")):
            return
        time.sleep(0.001)


def checkpoint_steps(run_dir: Path) -> list[int]:
    return [step for step, _ in list_checkpoints(run_dir / "checkpoints")]


def assert_every_checkpoint_loads(run_dir: Path) -> None:
    for _, path in list_checkpoints(run_dir / "checkpoints"):
        load_checkpoint(path)  # raises CheckpointError on a torn or unreadable file


def final_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1][1]).tensors


def test_twenty_kills_lose_nothing_and_the_result_is_exact(tmp_path: Path) -> None:
    steps, kills_wanted = 70, 20
    code, output = finish(run_args(tmp_path / "straight", steps), tmp_path / "straight.log")
    assert code == 0, output
    chooser = random.Random(7)
    runs, run_dir = tmp_path / "killed", tmp_path / "killed" / "kill"
    kills, inside_a_write, resumed_from = 0, 0, -1
    while kills < kills_wanted:
        resume = ["--resume", str(run_dir)] if resumed_from >= 0 else []
        process = start([*run_args(runs, steps), *resume], tmp_path / f"life_{kills}.log")
        # Wait for this process to make progress (a checkpoint past the one it resumed
        # from), then kill it at a random moment of the steps that follow.
        deadline = time.monotonic() + 120
        while process.is_alive() and time.monotonic() < deadline:
            if run_dir.is_dir() and max(checkpoint_steps(run_dir), default=-1) > resumed_from:
                break
            time.sleep(0.01)
        if kills % 4 == 3:
            # Every fourth kill waits for a checkpoint write under way, so some kills
            # surely land inside one (a random moment may miss all of them).
            wait_for_a_write(process, run_dir / "checkpoints")
        else:
            time.sleep(chooser.uniform(0.0, 0.3))
        if not process.is_alive():
            assert process.exitcode == 0, (tmp_path / f"life_{kills}.log").read_text()
            pytest.fail(f"the run finished after {kills} kills; make it longer")
        workers = children_of(process.pid)
        process.kill()  # SIGKILL
        process.join()
        assert workers and all_gone(workers), "loading processes outlived the training process"
        kills += 1
        inside_a_write += any((run_dir / "checkpoints").glob(f"{TEMP_PREFIX}*"))
        assert_every_checkpoint_loads(run_dir)
        resumed_from = max(checkpoint_steps(run_dir))
        assert resumed_from < steps
    code, output = finish([*run_args(runs, steps), "--resume", str(run_dir)],
                          tmp_path / "last.log")
    assert code == 0, output
    assert inside_a_write >= 1, "no kill landed inside a checkpoint write"
    assert not list((run_dir / "checkpoints").glob(f"{TEMP_PREFIX}*"))  # cleaned on resume
    expected, got = final_tensors(tmp_path / "straight" / "kill"), final_tensors(run_dir)
    assert expected.keys() == got.keys()
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []
    # The metrics hold each step once, in order, torn lines of killed writes dropped.
    steps_logged = [r["step"] for r in MetricsLog(run_dir / "metrics.jsonl").records()]
    assert steps_logged == list(range(1, steps + 1))


def test_sigterm_to_every_process_saves_and_exits_cleanly(tmp_path: Path) -> None:
    # A container stop or `kill -TERM -PGID` reaches the DataLoader workers too.
    output = tmp_path / "runs"
    args = run_args(output, 500, "data.num_workers=2", "train.checkpoint_every=0",
                    "data.max_items=50")
    proc = subprocess.Popen([sys.executable, "-m", "imtrans", *args], env=environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    metrics = output / "kill" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted at step" in stderr and "Traceback" not in stderr
    assert "DataLoader worker" not in stderr
    saved = list_checkpoints(output / "kill" / "checkpoints")
    assert len(saved) == 1
    load_checkpoint(saved[0][1])


def test_a_full_disk_keeps_the_last_checkpoint_and_says_so(tmp_path: Path) -> None:
    args = run_args(tmp_path / "runs", 6)
    code, output = finish(args, tmp_path / "full.log", full_after=2)
    assert code == 1
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert "no space left on device" in lines[0] and "step_00000003" in lines[0]
    assert "Traceback" not in output
    run_dir = tmp_path / "runs" / "kill"
    assert checkpoint_steps(run_dir) == [1, 2]
    assert_every_checkpoint_loads(run_dir)
    assert not list((run_dir / "checkpoints").glob(f"{TEMP_PREFIX}*"))
    # And the run goes on from there once there is room again.
    code, output = finish([*args, "--resume", str(run_dir)], tmp_path / "again.log")
    assert code == 0, output
    assert max(checkpoint_steps(run_dir)) == 6


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3):
        log.write({"step": step, "losses": {"G": 1.0}})
    with log.path.open("a") as file:
        file.write('{"step": 4, "los')  # a process killed in the middle of a write
    log.truncate_after(2)
    assert [r["step"] for r in log.records()] == [1, 2]
    log.write({"step": 3})
    assert [r["step"] for r in log.records()] == [1, 2, 3]
