"""Kills, signals and a full disk lose nothing: checkpoints stay whole and resumes stay exact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from imtrans.engine.checkpoint import TEMP_PREFIX, list_checkpoints, load_checkpoint
from imtrans.engine.metrics import MetricsLog

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")

#: A tiny CycleGAN that saves a checkpoint after every step: kills land in steps, in metric
#: and sample writes, and (with the slowed writer below) often inside a checkpoint write.
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "run.device=cpu", "data.max_items=3", "trainer.pool_size=2", "schedule.n_epochs=20",
        "schedule.n_epochs_decay=20", "train.log_every=1", "train.sample_every=7",
        "train.checkpoint_every=1", "train.keep_last=2", "run.name=kill"]

#: Runs imtrans with checkpoint files written in 8 pieces 5 ms apart (instead of at once), and
#: fails the write when IMTRANS_TEST_DISK_FULL_AFTER checkpoints have been written.
WRAPPER = '''
import errno, os, sys, time
import imtrans.engine.checkpoint as checkpoint

written = 0
full_after = int(os.environ.get("IMTRANS_TEST_DISK_FULL_AFTER", "-1"))

def slow_write(path, data):
    global written
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
sys.argv[0] = "imtrans"
main()
'''


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env["IMTRANS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # One thread: these networks are too small to share, and on a busy machine spinning
    # threads make each step many times slower.
    env["OMP_NUM_THREADS"] = "1"
    return env


def command(tmp_path: Path, *args: str) -> list[str]:
    wrapper = tmp_path / "imtrans_wrapper.py"
    wrapper.write_text(WRAPPER)
    return [sys.executable, str(wrapper), *args]


def run_args(output: Path, steps: int, *extra: str) -> list[str]:
    sets = [*TINY, f"run.output_dir={output}", f"train.max_steps={steps}", *extra]
    return ["run", CYCLEGAN, *[a for s in sets for a in ("--set", s)]]


def checkpoint_steps(run_dir: Path) -> list[int]:
    return [step for step, _ in list_checkpoints(run_dir / "checkpoints")]


def assert_every_checkpoint_loads(run_dir: Path) -> None:
    for _, path in list_checkpoints(run_dir / "checkpoints"):
        load_checkpoint(path)  # raises CheckpointError on a torn or unreadable file


def final_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1][1]).tensors


def test_twenty_kills_lose_nothing_and_the_result_is_exact(tmp_path: Path) -> None:
    steps, kills_wanted = 70, 20
    straight = subprocess.run(command(tmp_path, *run_args(tmp_path / "straight", steps)),
                              env=environment(), capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr
    chooser = random.Random(7)
    output, run_dir = tmp_path / "killed", tmp_path / "killed" / "kill"
    kills, inside_a_write, resumed_from = 0, 0, -1
    while kills < kills_wanted:
        resume = ["--resume", str(run_dir)] if resumed_from >= 0 else []
        proc = subprocess.Popen(command(tmp_path, *run_args(output, steps), *resume),
                                env=environment(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        # Wait for this process to make progress (a checkpoint past the one it resumed
        # from), then kill it at a random moment of the steps that follow.
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if run_dir.is_dir() and max(checkpoint_steps(run_dir), default=-1) > resumed_from:
                break
            time.sleep(0.01)
        time.sleep(chooser.uniform(0.0, 0.3))
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the run finished after {kills} kills; make it longer")
        proc.kill()
        proc.wait()
        kills += 1
        inside_a_write += any((run_dir / "checkpoints").glob(f"{TEMP_PREFIX}*"))
        assert_every_checkpoint_loads(run_dir)
        resumed_from = max(checkpoint_steps(run_dir))
        assert resumed_from < steps
    done = subprocess.run(command(tmp_path, *run_args(output, steps), "--resume", str(run_dir)),
                          env=environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
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
    env = environment() | {"IMTRANS_TEST_DISK_FULL_AFTER": "2"}
    proc = subprocess.run(command(tmp_path, *run_args(tmp_path / "runs", 6)), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "no space left on device" in lines[0] and "step_00000003" in lines[0]
    assert "Traceback" not in proc.stderr
    run_dir = tmp_path / "runs" / "kill"
    assert checkpoint_steps(run_dir) == [1, 2]
    assert_every_checkpoint_loads(run_dir)
    assert not list((run_dir / "checkpoints").glob(f"{TEMP_PREFIX}*"))
    # And the run goes on from there once there is room again.
    again = subprocess.run(command(tmp_path, *run_args(tmp_path / "runs", 6), "--resume",
                                   str(run_dir)), env=environment(), capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
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
