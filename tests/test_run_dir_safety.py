"""A run directory has one writer and one history: the lock, honest resumes, safe names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import error_line
from conftest import run_files_snapshot as snapshot

from imtrans.cli import cli
from imtrans.training.records import MetricsLog
from tests.conftest import TINY_RUN

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
TINY = [f"{key}={value}" for key, value in TINY_RUN.items()]


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def run(tmp_path: Path, *args: str, steps: int = 2):
    overrides = [*TINY, f"run.output_dir={tmp_path / 'runs'}", "run.name=r",
                 f"train.max_steps={steps}", "train.checkpoint_every=1", "train.keep_last=10"]
    return CliRunner().invoke(cli, ["run", CYCLEGAN, *sets(*overrides), *args])


def test_a_second_process_cannot_write_a_busy_run_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env |= {"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    overrides = [*TINY, f"run.output_dir={tmp_path / 'runs'}", "run.name=r",
                 "train.max_steps=100000", "train.checkpoint_every=1"]
    first = subprocess.Popen([sys.executable, "-m", "imtrans", "run", CYCLEGAN,
                              *sets(*overrides)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "runs" / "r"
    try:
        deadline = time.monotonic() + 120
        while not list((run_dir / "checkpoints").glob("step_*.safetensors")):
            assert first.poll() is None and time.monotonic() < deadline, first.stderr
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-m", "imtrans", "run", CYCLEGAN,
                                 *sets(*overrides), "--resume", str(run_dir)], env=env,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stderr
        lines = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and f"is in use by process {first.pid}" in lines[0], lines
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The kernel freed the lock with the process: nothing stale to remove by hand.
    resumed = subprocess.run([sys.executable, "-m", "imtrans", "run", CYCLEGAN,
                              *sets(*overrides[:-2], "train.max_steps=1"), "--resume",
                              str(run_dir)], env=env, capture_output=True, text=True,
                             timeout=180)
    assert "is in use" not in resumed.stderr, resumed.stderr
    assert resumed.returncode == 0, resumed.stderr  # nothing to train (or one step): it ends


def test_a_resume_with_nothing_to_train_changes_no_file(tmp_path: Path) -> None:
    assert run(tmp_path).exit_code == 0
    run_dir = tmp_path / "runs" / "r"
    before = snapshot(run_dir)
    result = run(tmp_path, "--resume", str(run_dir), "--set", "train.log_every=5")
    assert result.exit_code == 0, result.output
    assert "nothing to train" in result.output and "No file was changed" in result.output
    assert snapshot(run_dir) == before


# (Trainer settings are refused on resume by the architecture check already, which names
# the setting; --allow-changes does not lift that.)
@pytest.mark.parametrize("change", ["optim.lr=0.0001", "data.direction=AtoB",
                                    "data.batch_size=2", "losses.cycle.weight=5",
                                    "schedule.n_epochs=50"])
def test_task_changes_on_resume_are_refused_unless_allowed(tmp_path: Path, change: str) -> None:
    assert run(tmp_path).exit_code == 0
    run_dir = tmp_path / "runs" / "r"
    before = snapshot(run_dir)
    line = error_line(run(tmp_path, "--resume", str(run_dir), "--set", change, steps=3))
    key = change.split("=")[0]
    assert f"other task settings than it was trained with: {key} " in line
    assert "--allow-changes" in line
    assert snapshot(run_dir) == before
    result = run(tmp_path, "--resume", str(run_dir), "--set", change, "--allow-changes",
                 steps=3)
    assert result.exit_code == 0, result.output
    records = MetricsLog(run_dir / "metrics.jsonl").records()
    changed = [r for r in records if "resumed_with_changes" in r]
    assert len(changed) == 1 and changed[0]["step"] == 2
    assert key in changed[0]["resumed_with_changes"]


def test_resuming_an_older_checkpoint_branches_and_keeps_the_run(tmp_path: Path) -> None:
    assert run(tmp_path, steps=4).exit_code == 0
    run_dir = tmp_path / "runs" / "r"
    older = sorted((run_dir / "checkpoints").glob("step_00000002*.safetensors"))[0]
    before = snapshot(run_dir)
    result = run(tmp_path, "--resume", str(older), steps=4)
    assert result.exit_code == 0, result.output
    branch = tmp_path / "runs" / "r-from-step-2"
    assert f"continuing in the new branch {branch}" in result.output
    assert snapshot(run_dir) == before  # the old history, every checkpoint of it, untouched
    steps = [r["step"] for r in MetricsLog(branch / "metrics.jsonl").records() if "losses" in r]
    assert steps == [1, 2, 3, 4]
    # A plain --resume of the recipe's run still means the original run, not the branch.
    result = run(tmp_path, "--resume", steps=5)
    assert result.exit_code == 0, result.output
    assert f"resuming {run_dir} from step 4" in result.output


@pytest.mark.parametrize("name", ["../../x", "/tmp/elsewhere", "a/b", ".."])
def test_a_run_name_never_leaves_the_output_folder(tmp_path: Path, name: str) -> None:
    output = tmp_path / "out" / "runs"
    result = CliRunner().invoke(cli, ["run", CYCLEGAN, *sets(
        *TINY, f"run.output_dir={output}", f"run.name={name}", "train.max_steps=1")])
    assert "is not a folder name" in error_line(result)
    assert not (tmp_path / "x").exists() and not Path("/tmp/elsewhere").exists()
    assert not output.exists() or not any(output.iterdir())
