"""Torch's CPU threads in training (``run.threads``, ``--threads``): the choice from the usable
cores, the data loading processes, torchrun's processes and the environment; the recipe key and
the option reaching torch; the line that says it; the values a recipe may give."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import imtrans
from imtrans.core.observer import TrainingObserver
from imtrans.training import threads as threads_module
from imtrans.training.threads import (
    AUTO_MARK,
    ThreadChoice,
    choose_threads,
    torch_threads,
    training_threads,
)

ROOT = Path(__file__).resolve().parents[1]
PIX2PIX = str(ROOT / "recipes" / "pix2pix_edges2shoes.toml")
TINY = ["data.load_size=36", "data.crop_size=32", "generator.name=unet", "generator.num_downs=5",
        "generator.ngf=4", "discriminator.ndf=4", "run.device=cpu", "data.max_items=4",
        "train.max_steps=2", "train.sample_every=100"]

#: Print torch's thread count at the first step of an ``imtrans run``, then run the command.
PROBE = """
import sys, torch
from imtrans.cli import main
from imtrans.cli.progress import RichProgress
def on_step(self, step, epoch):
    if step == 1:
        print(f"torch threads in step 1: {torch.get_num_threads()}", file=sys.stderr)
RichProgress.on_step = on_step
main()
"""


@pytest.mark.parametrize(("cores", "workers", "processes", "expected"), [
    (2, 0, 1, 2),   # loading in the training process: every core
    (2, 1, 1, 1),
    (2, 2, 1, 1),   # as many loaders as cores: still one thread
    (8, 4, 1, 4),
    (1, 0, 1, 1),
    (16, 3, 4, 1),  # 4 cores per process, 3 loaders each
    (16, 1, 4, 3),
    (3, 0, 2, 1),   # a core left over is no thread of anyone's
])
def test_automatic_choice_is_the_share_of_cores_left_by_the_loaders(
        cores: int, workers: int, processes: int, expected: int) -> None:
    choice = choose_threads("auto", workers=workers, processes=processes, cores=cores,
                            environ={})
    assert choice.threads == expected
    assert not choice.from_environment
    assert 1 <= choice.threads <= max(1, cores // processes)


def test_the_notice_says_the_count_and_why() -> None:
    one = choose_threads("auto", workers=1, cores=2, environ={})
    assert one.notice == ("threads: 1 torch thread (2 usable CPU cores, 1 data loading "
                          "process; set run.threads or --threads to change)")
    shared = choose_threads("auto", workers=1, processes=2, cores=8, environ={})
    assert shared.notice == ("threads: 3 torch threads per process (8 usable CPU cores among 2 "
                             "processes, 1 data loading process each; set run.threads or "
                             "--threads to change)")


@pytest.mark.parametrize(("setting", "cores", "processes", "expected"), [
    (1, 2, 1, 1), (2, 2, 1, 2), (3, 8, 1, 3),
    (5, 2, 1, 2),   # never more threads than cores
    (4, 8, 4, 2),   # nor more than this process's share of them
])
def test_an_explicit_setting_wins_within_the_cores(setting: int, cores: int, processes: int,
                                                  expected: int) -> None:
    choice = choose_threads(setting, workers=3, processes=processes, cores=cores,
                            environ={"OMP_NUM_THREADS": "7"})  # the explicit setting wins
    assert choice.threads == expected
    assert not choice.from_environment
    if setting > expected:
        assert f"run.threads = {setting} is more than the" in choice.notice
        assert f"using {expected}" in choice.notice
    else:
        assert choice.notice.endswith(f"(run.threads = {setting})")


@pytest.mark.parametrize(("environ", "named"), [
    ({"OMP_NUM_THREADS": "3"}, "OMP_NUM_THREADS=3"),
    ({"MKL_NUM_THREADS": "3"}, "MKL_NUM_THREADS=3"),
    ({"OMP_NUM_THREADS": "5", "MKL_NUM_THREADS": "3"}, "MKL_NUM_THREADS=3"),  # torch's order
])
def test_the_environment_wins_over_the_automatic_choice(environ: dict[str, str],
                                                        named: str) -> None:
    choice = choose_threads("auto", workers=2, cores=2, environ=environ, torch_threads_now=3)
    assert choice == ThreadChoice(3, f"threads: 3 torch threads ({named} in the environment, "
                                  "kept over the automatic choice; set run.threads or "
                                  "--threads to change)", from_environment=True)


@pytest.mark.parametrize("environ", [
    {"OMP_NUM_THREADS": "0"}, {"OMP_NUM_THREADS": "many"}, {"OMP_NUM_THREADS": ""},
    {"OMP_NUM_THREADS": "1", AUTO_MARK: "1"},  # torchrun's default under imtrans run --nproc
])
def test_no_count_in_the_environment_leaves_the_automatic_choice(
        environ: dict[str, str]) -> None:
    choice = choose_threads("auto", workers=0, cores=4, environ=environ, torch_threads_now=1)
    assert (choice.threads, choice.from_environment) == (4, False)


def test_usable_cores_are_this_process_s_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert choose_threads("auto", workers=2, environ={}).threads == 4
    monkeypatch.delattr(os, "sched_getaffinity")  # platforms without it: every CPU
    assert choose_threads("auto", workers=2, environ={}).threads == 62


def test_torchrun_s_local_processes_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 8)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # 4 processes in all, 2 on this machine
    assert training_threads("auto", None, processes=4).threads == 4
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert training_threads("auto", None, processes=4).threads == 2


def test_the_block_sets_torch_and_restores_it() -> None:
    before = torch.get_num_threads()
    other = 2 if before != 2 else 1
    with torch_threads(ThreadChoice(other, "")):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with torch_threads(ThreadChoice(other, "", from_environment=True)):  # torch has it already
        assert torch.get_num_threads() == before


def _another_count() -> tuple[int, int]:
    """Torch's thread count now, and another one this machine's cores allow."""
    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 1
    if wanted > threads_module.usable_cores():
        pytest.skip("one usable core: no other thread count to set")
    return before, wanted


class _ThreadsAtEachStep(TrainingObserver):
    def __init__(self) -> None:
        self.seen: list[int] = []
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def on_step(self, step: int, epoch: int) -> None:
        self.seen.append(torch.get_num_threads())


def test_run_threads_reaches_torch_in_training_and_is_restored_after(tmp_path: Path) -> None:
    before, wanted = _another_count()
    probe = _ThreadsAtEachStep()
    result = imtrans.train(PIX2PIX, [*TINY, "data.num_workers=0", f"run.threads={wanted}",
                                     f"run.output_dir={tmp_path}"], observer=probe)
    assert probe.seen == [wanted, wanted]
    assert torch.get_num_threads() == before  # a notebook keeps its own count
    line = f"threads: {wanted} torch thread{'s' if wanted > 1 else ''} (run.threads = {wanted})"
    assert probe.messages.count(line) == 1
    assert line in (result.run_dir / "train.log").read_text()


def _run_probe(tmp_path: Path, *args: str, environ: dict[str, str]
               ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("IMTRANS_") and k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env |= {"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", **environ}
    overrides = [a for o in [*TINY, f"run.output_dir={tmp_path}"] for a in ("--set", o)]
    proc = subprocess.run([sys.executable, "-c", PROBE, "run", PIX2PIX, *overrides, *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_the_option_and_the_automatic_choice_reach_torch_in_a_run(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cores is not None
    # --threads wins over the environment's OMP_NUM_THREADS=1 (torch started with 1).
    wanted = min(2, cores)
    given = _run_probe(tmp_path, "--threads", "2", environ={"OMP_NUM_THREADS": "1"})
    assert f"torch threads in step 1: {wanted}" in given.stderr
    assert "threads: 2 torch threads (run.threads = 2)" in given.stderr or cores < 2
    # No variable, loading in the training process: every usable core.
    automatic = _run_probe(tmp_path, "--set", "data.num_workers=0", environ={})
    assert f"torch threads in step 1: {cores}" in automatic.stderr
    line = (f"threads: {cores} torch thread{'s' if cores > 1 else ''} ({cores} usable CPU "
            f"core{'s' if cores > 1 else ''}, 0 data loading processes; set run.threads or "
            "--threads to change)")
    assert automatic.stderr.count(line) == 1
    logs = sorted(tmp_path.glob("pix2pix_edges2shoes*/train.log"))
    assert len(logs) == 2 and line in logs[1].read_text()


@pytest.mark.parametrize("value", ["auto", "1", "3", '"auto"'])
def test_validate_accepts_auto_and_counts(value: str) -> None:
    assert imtrans.load_recipe(PIX2PIX, [f"run.threads={value}"]).run.threads in ("auto", 1, 3)


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "true", '"2"', "many"])
def test_validate_refuses_what_is_no_thread_count(value: str) -> None:
    with pytest.raises(imtrans.RecipeError, match=r"run\.threads = .*expected \"auto\" or a "
                       r"thread count >= 1"):
        imtrans.load_recipe(PIX2PIX, [f"run.threads={value}"])


def test_bench_times_the_steps_with_the_run_s_threads() -> None:
    from imtrans.bench.timing import benchmark

    before, wanted = _another_count()
    probe = _ThreadsAtEachStep()
    recipe = imtrans.load_recipe(PIX2PIX, [*TINY, f"run.threads={wanted}"])
    result = benchmark(recipe, steps=1, warmup=0, synthetic=True, observer=probe)
    assert result["settings"]["threads"] == wanted
    assert f"threads: {wanted} torch thread{'s' if wanted > 1 else ''} (run.threads = " \
           f"{wanted})" in probe.messages
    assert torch.get_num_threads() == before
