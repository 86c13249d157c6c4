"""`--resume auto` resumes the recipe's run or starts it, in one run directory; a checkpoint
records how many processes trained it, and a resume with another global batch is refused.

A job scheduler (a Slurm requeue), `torchrun --max-restarts` and a restarted notebook rerun the
same command: it must continue the run when there is one, start it when there is none, and
never make a `-2` beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from conftest import error_line
from conftest import run_files_snapshot as snapshot
from safetensors.torch import load_file

import imtrans
from imtrans.catalogue.recipe_loader import load_recipe
from imtrans.cli import cli
from imtrans.errors import CheckpointError, RecipeError
from imtrans.runs.checkpoints.files import load_checkpoint
from imtrans.training.checkpointing import check_processes
from imtrans.training.records import MetricsLog
from imtrans.training.run_session import _same_start_on_every_rank

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
#: 32 px, 4 filters, no image pool (a rank's pool is not saved), 4 images: 2 global batches of 2
#: make an epoch, so the epoch a step falls in tells 2 x 1 images a step from 1 x 1.
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu", "train.log_every=1", "trainer.pool_size=0",
        "train.sample_every=2", "data.max_items=4"]


pytestmark = pytest.mark.usefixtures("builtins_only")  # whatever plugins are installed too


def overrides(tmp_path: Path, steps: int, *more: str, name: str = "r") -> list[str]:
    return [*TINY, f"run.output_dir={tmp_path / 'runs'}", f"run.name={name}",
            f"train.max_steps={steps}", *more]


def sets(*values: str) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def run(tmp_path: Path, steps: int, *args: str, more: tuple[str, ...] = ()):
    """``imtrans run CYCLEGAN --resume auto`` in this process; returns click's result."""
    return CliRunner().invoke(cli, ["run", CYCLEGAN, *sets(*overrides(tmp_path, steps, *more)),
                                    "--resume", "auto", *args])


def steps_logged(run_dir: Path) -> list[int]:
    return [r["step"] for r in MetricsLog(run_dir / "metrics.jsonl").records() if "losses" in r]


def newest(run_dir: Path) -> Path:
    return max((run_dir / "checkpoints").glob("step_*.safetensors"))


def assert_same_tensors(a: Path, b: Path) -> None:
    first, second = load_file(a), load_file(b)
    assert first.keys() == second.keys()
    assert [k for k in first if not torch.equal(first[k], second[k])] == []


# --- resume or start -------------------------------------------------------------------------

def test_auto_starts_then_resumes_exactly_then_has_nothing_to_train(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r"
    started = run(tmp_path, 2)
    assert started.exit_code == 0, started.output
    assert f"run directory: {run_dir}" in started.output and "resuming" not in started.output
    assert newest(run_dir).name.startswith("step_00000002")

    resumed = run(tmp_path, 4)
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {run_dir} from step 2" in resumed.output
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]  # no r-2
    assert steps_logged(run_dir) == [1, 2, 3, 4]  # each once: none duplicated, none lost
    # Exactly where it stopped: the weights, moments and RNG of a straight run of 4 steps.
    straight = CliRunner().invoke(cli, ["run", CYCLEGAN,
                                        *sets(*overrides(tmp_path, 4, name="straight"))])
    assert straight.exit_code == 0, straight.output
    assert_same_tensors(newest(run_dir), newest(tmp_path / "runs" / "straight"))

    before = snapshot(run_dir)
    finished = run(tmp_path, 4)
    assert finished.exit_code == 0, finished.output
    assert "nothing to train" in finished.output and "No file was changed" in finished.output
    assert snapshot(run_dir) == before
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r", "straight"]


def test_a_run_stopped_before_its_first_checkpoint_starts_over_in_its_directory(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r"
    assert run(tmp_path, 2).exit_code == 0
    first_attempt = tmp_path / "first.safetensors"
    newest(run_dir).rename(first_attempt)
    # What a run killed while writing its first checkpoint leaves: its record, metrics, grids,
    # log and a temporary file; and a file of the user's own.
    (run_dir / "checkpoints" / ".tmp-step_00000002.safetensors-1-ab").write_bytes(b"torn")
    (run_dir / "notes.txt").write_text("mine")
    log_before = (run_dir / "train.log").read_text()

    again = run(tmp_path, 2)
    assert again.exit_code == 0, again.output
    said = " ".join(again.output.split())
    assert (f"warning: {run_dir} holds no checkpoint (its run stopped before the first): the "
            "run starts over in it at step 0: it drops the 2 records of metrics.jsonl") in said
    assert "overwrites the 1 sample grid as it reaches their steps" in said
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]
    assert steps_logged(run_dir) == [1, 2]
    assert (run_dir / "notes.txt").read_text() == "mine"
    assert (run_dir / "train.log").read_text().startswith(log_before)  # it goes on
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == [newest(run_dir).name]
    assert_same_tensors(newest(run_dir), first_attempt)  # a clean start: the same run


def test_auto_refuses_a_folder_that_is_not_a_run_and_touches_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "data.txt").write_text("not a run")
    line = error_line(run(tmp_path, 2))
    assert f"{run_dir} exists and holds files but no run record (recipe.toml)" in line
    assert "choose another run.name" in line
    assert [p.name for p in run_dir.iterdir()] == ["data.txt"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]

    run_dir.with_name("f").write_text("a file")
    line = error_line(run(tmp_path, 2, more=("run.name=f",)))
    assert "is a file, not a folder" in line and run_dir.with_name("f").read_text() == "a file"


def test_a_start_in_a_given_directory_refuses_one_that_holds_checkpoints(tmp_path: Path) -> None:
    from imtrans.runner import fit

    run_dir = tmp_path / "runs" / "r"
    assert run(tmp_path, 2).exit_code == 0
    before = snapshot(run_dir)
    recipe = load_recipe(CYCLEGAN, overrides(tmp_path, 4))
    with pytest.raises(RecipeError, match=r"holds a run's checkpoints .*resume it"):
        fit(recipe, run_dir=run_dir)  # a new run there would mix two histories
    assert snapshot(run_dir) == before


def test_train_api_resume_auto_starts_then_continues_one_run(tmp_path: Path) -> None:
    first = imtrans.train(CYCLEGAN, overrides(tmp_path, 2), resume="auto")
    second = imtrans.train(CYCLEGAN, overrides(tmp_path, 3), resume="auto")
    assert first.run_dir == second.run_dir == tmp_path / "runs" / "r"
    assert (first.step, second.step) == (2, 3)
    assert steps_logged(second.run_dir) == [1, 2, 3]
    assert load_checkpoint(second.checkpoint).manifest["step"] == 3


# --- the process count ---------------------------------------------------------------------

def recipe_with(batch_size: int):
    return load_recipe(CYCLEGAN, [*TINY, f"data.batch_size={batch_size}"])


def manifest(processes: int | None, batch_size: int | None, step: int = 4) -> dict:
    held = {"processes": processes, "batch_size": batch_size}
    return {"step": step} | {k: v for k, v in held.items() if v is not None}


def test_check_processes_continues_at_the_same_global_batch_and_refuses_another() -> None:
    path = Path("runs/r/checkpoints/step_00000004.safetensors")
    notes: list[str] = []
    changes: dict = {}
    check_processes(manifest(2, 1), recipe_with(1), 2, path, notes, changes)
    assert notes == [] and changes == {}
    check_processes(manifest(2, 1), recipe_with(2), 1, path, notes, changes)  # 2 x 1 = 1 x 2
    assert notes == [] and changes == {"processes (--nproc)": [2, 1]}

    with pytest.raises(CheckpointError) as refused:
        check_processes(manifest(2, 1), recipe_with(1), 1, path, notes, {})
    message = str(refused.value)
    assert "\n" not in message
    assert (f"{path} was trained by 2 processes of data.batch_size 1 (2 images a step), this "
            "run has 1 process of data.batch_size 1 (1 a step): its step 4") in message
    assert message.endswith("Resume it with 2 processes (--nproc 2), or keep 2 images a "
                            "step: --nproc 1 --set data.batch_size=2 --allow-changes")
    with pytest.raises(CheckpointError, match=r"\(--nproc 3\)$"):  # 3 images: no batch for 2
        check_processes(manifest(3, 1), recipe_with(1), 2, path, notes, {})
    with pytest.raises(CheckpointError, match="malformed process record"):
        check_processes(manifest("2", 1), recipe_with(1), 1, path, notes, {})  # type: ignore[arg-type]


def test_check_processes_passes_old_imported_and_step_0_checkpoints() -> None:
    path = Path("step_00000004.safetensors")
    notes: list[str] = []
    check_processes(manifest(None, None), recipe_with(1), 2, path, notes, {})
    assert notes == [f"{path.name} predates the record of the process count: it is taken to "
                     "have been trained as this run is, by 2 processes of data.batch_size 1; "
                     "if it was not, resume it with that count"]
    for nowhere in (manifest(2, 1, step=0), manifest(2, 1) | {"imported": {}}):
        check_processes(nowhere, recipe_with(1), 1, path, notes, {})  # no place to keep
    assert len(notes) == 1


def test_every_rank_must_start_at_rank_0s_step() -> None:
    def ddp(rank0_step: int, rank: int = 1) -> SimpleNamespace:
        return SimpleNamespace(enabled=True, rank=rank,
                               share_path=lambda path: Path(str(rank0_step)))

    _same_start_on_every_rank(ddp(6), 6, Path("a.safetensors"))
    with pytest.raises(CheckpointError, match=r"rank 1 starts at step 0 \(no checkpoint\) "
                                              r"but rank 0 at step 6: every process must see"):
        _same_start_on_every_rank(ddp(6), 0, None)  # another machine, without rank 0's files


def test_nproc_2_then_nproc_1_is_refused_or_continues_at_the_same_global_batch(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env |= {"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "imtrans", "run", CYCLEGAN, "--nproc", "2",
                          "--resume", "auto", *sets(*overrides(tmp_path, 2))], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    run_dir = tmp_path / "runs" / "r"
    saved = load_checkpoint(newest(run_dir)).manifest
    assert (saved["processes"], saved["batch_size"], saved["step"], saved["epoch"]) == (2, 1, 2, 1)

    before = snapshot(run_dir)
    line = error_line(run(tmp_path, 4))  # one process of 1 image: another place in the data
    assert "trained by 2 processes of data.batch_size 1" in line
    assert "this run has 1 process of data.batch_size 1" in line and "--nproc 2" in line
    assert snapshot(run_dir) == before

    # 1 process x 2 images is the same global batch: the same place in the epochs.
    same = run(tmp_path, 4, "--allow-changes", more=("data.batch_size=2",))
    assert same.exit_code == 0, same.output
    final = load_checkpoint(newest(run_dir)).manifest
    assert (final["processes"], final["batch_size"], final["step"]) == (1, 2, 4)
    assert final["epoch"] == 2  # 4 steps of 2 images over 4 images (1 image a step: epoch 1)
    assert newest(run_dir).name == "step_00000004_epoch_0002.safetensors"
    changed = [r for r in MetricsLog(run_dir / "metrics.jsonl").records()
               if "resumed_with_changes" in r]
    assert changed == [{"step": 2, "resumed_with_changes": {
        "processes (--nproc)": [2, 1], "data.batch_size": [1, 2]}}]
    assert steps_logged(run_dir) == [1, 2, 3, 4]
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text()
            .splitlines() if "losses" in line] == [1, 1, 2, 2]
