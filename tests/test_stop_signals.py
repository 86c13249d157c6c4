"""Stop signals: handled only while training runs, the handlers found put back after it, the
stop reaching an in-process caller (pytest) as a KeyboardInterrupt, and the notice saying how
long a long step still takes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import imtrans
from imtrans.core.stop_signals import STOP_SIGNALS, SignalInterrupted, StopSignals, stop_notice
from imtrans.errors import ImtransError, TrainingInterrupted
from imtrans.trainers.cyclegan import CycleGANTrainer

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "data.num_workers=0", "run.device=cpu", "data.max_items=4", "trainer.pool_size=0",
        "train.log_every=100"]
NOTICE = "Ctrl-C: stopping after this step, with a checkpoint of it..."


def _handlers() -> dict[signal.Signals, Any]:
    return {stop: signal.getsignal(stop) for stop in STOP_SIGNALS}


def _own(signum: int, frame: Any) -> None:
    """A handler of the caller's, to see that the caller's handlers are put back."""


@pytest.fixture
def own_handlers() -> Iterator[dict[signal.Signals, Any]]:
    """SIGTERM and SIGHUP handled by the test itself, SIGINT by Python's default handler (a
    pytest-xdist test process ignores SIGINT: there it is set for the test, then put back)."""
    before = _handlers()
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.default_int_handler if stop == signal.SIGINT else _own)
    yield _handlers()
    for stop, handler in before.items():
        signal.signal(stop, handler)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# The notice.

def _signalled_after_steps(step_seconds: list[float], into_step: float, signum: int,
                           **options: Any) -> list[str]:
    """The lines a stop signal shows ``into_step`` seconds into the step after steps of
    ``step_seconds`` (a fake clock: the wait comes from the step times alone)."""
    clock, lines = FakeClock(), list[str]()
    stops = StopSignals(clock=clock, **options)
    with stops.installed(lines.append):
        for seconds in step_seconds:
            clock.now += seconds
            stops.step_ended()
        clock.now += into_step
        signal.raise_signal(signum)
    assert stops.requested
    return lines


def test_the_notice_says_the_wait_when_the_step_is_long() -> None:
    # The first step pays for warm-up; the wait comes from the steps after it.
    lines = _signalled_after_steps([300.0, 77.0, 77.0], 7.0, signal.SIGINT, stop_at_once=True)
    assert lines == [f"{NOTICE} (about 70 s; Ctrl-C again: stop at once, without it)"]


def test_the_notice_says_nothing_of_a_short_wait() -> None:
    lines = _signalled_after_steps([2.0, 0.5, 0.5], 0.1, signal.SIGINT, stop_at_once=True)
    assert lines == [f"{NOTICE} (Ctrl-C again: stop at once, without it)"]
    # Before any step has ended there is no time per step to go by.
    assert _signalled_after_steps([], 50.0, signal.SIGINT, stop_at_once=True) == lines


def test_several_processes_wait_one_step_more_and_cannot_stop_at_once(
        own_handlers: dict[signal.Signals, Any]) -> None:
    lines = _signalled_after_steps([100.0, 40.0, 40.0], 10.0, signal.SIGTERM,
                                   stop_at_once=False, steps_to_agree=1)
    assert lines == ["SIGTERM: stopping after this step, with a checkpoint of it... "
                     "(about 70 s)"]


def test_waits_are_said_in_minutes_and_hours() -> None:
    notices = [stop_notice(signal.SIGTERM, wait_seconds=seconds, stop_at_once=True)
               for seconds in (12 * 60 + 10, 3 * 3600)]
    assert [n.split("(")[1] for n in notices] == [
        "about 12 min; Ctrl-C: stop at once, without it)",
        "about 3.0 h; Ctrl-C: stop at once, without it)"]


def test_a_second_ctrl_c_raises_keyboard_interrupt_at_once() -> None:
    stops = StopSignals(stop_at_once=True)
    with stops.installed(), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        assert stops.requested  # the first only asks
        signal.raise_signal(signal.SIGINT)


# The handlers: installed for the block only.

def test_the_handlers_found_are_put_back_after_the_block_and_after_an_error(
        own_handlers: dict[signal.Signals, Any]) -> None:
    outer, inner = StopSignals(stop_at_once=True), StopSignals(stop_at_once=True)
    with outer.installed():
        outer_handlers = _handlers()
        assert all(handler not in own_handlers.values() for handler in outer_handlers.values())
        with pytest.raises(ValueError), inner.installed():
            assert _handlers() != outer_handlers
            raise ValueError
        assert _handlers() == outer_handlers  # a nested block puts back the outer one's
        signal.raise_signal(signal.SIGTERM)
        assert outer.requested and not inner.requested
    assert _handlers() == own_handlers
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is Python's own again
        signal.raise_signal(signal.SIGINT)


def test_nothing_is_installed_outside_the_main_thread() -> None:
    seen: list[Any] = []

    def train() -> None:
        try:
            with StopSignals(stop_at_once=True).installed():
                seen.append(_handlers())
        except Exception as exc:  # signal.signal raises ValueError outside the main thread
            seen.append(exc)

    before = _handlers()
    thread = threading.Thread(target=train)
    thread.start()
    thread.join()
    assert seen == [before]


# Training in this process.

def _recipe(tmp_path: Path, *overrides: str) -> imtrans.Recipe:
    return imtrans.load_recipe(CYCLEGAN, [*TINY, f"run.output_dir={tmp_path / 'runs'}",
                                          *overrides])


def _signal_in_step(monkeypatch: pytest.MonkeyPatch, at: int, signum: int) -> None:
    """Send ``signum`` to this process during step ``at`` (as a terminal or a kill would)."""
    original, calls = CycleGANTrainer.training_step, {"n": 0}

    def step(self: CycleGANTrainer, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] == at:
            os.kill(os.getpid(), signum)
        return original(self, batch)

    monkeypatch.setattr(CycleGANTrainer, "training_step", step)


def test_after_training_the_handlers_are_the_ones_before(
        tmp_path: Path, own_handlers: dict[signal.Signals, Any]) -> None:
    result = imtrans.train(_recipe(tmp_path, "train.max_steps=2"))
    assert result.step == 2
    assert _handlers() == own_handlers
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_stops_training_with_a_checkpoint_and_reaches_the_caller_as_an_interrupt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        own_handlers: dict[signal.Signals, Any], signum: int) -> None:
    _signal_in_step(monkeypatch, at=2, signum=signum)
    with pytest.raises(KeyboardInterrupt) as stopped:
        imtrans.train(_recipe(tmp_path, "train.max_steps=50"))
    assert isinstance(stopped.value, SignalInterrupted)
    assert isinstance(stopped.value, TrainingInterrupted | ImtransError)
    assert "interrupted at step 2; checkpoint saved to" in str(stopped.value)
    run_dir = tmp_path / "runs" / "cyclegan_photo2monet"
    assert [p.name for p in (run_dir / "checkpoints").glob("step_*")] == [
        "step_00000002.safetensors"]
    assert _handlers() == own_handlers
    with pytest.raises(KeyboardInterrupt):  # a later Ctrl-C is Python's own again
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_during_an_in_process_training_ends_the_pytest_session(tmp_path: Path) -> None:
    """The issue itself: pytest counted the stop as a failed test and ran the next one."""
    (tmp_path / "test_two.py").write_text(textwrap.dedent(f"""
        import os, signal
        import imtrans
        from imtrans.trainers.cyclegan import CycleGANTrainer

        def test_trains(tmp_path, monkeypatch):
            original = CycleGANTrainer.training_step
            def step(self, batch):
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the terminal
                return original(self, batch)
            monkeypatch.setattr(CycleGANTrainer, "training_step", step)
            imtrans.train(imtrans.load_recipe({CYCLEGAN!r}, {TINY!r} + [
                f"run.output_dir={{tmp_path}}", "train.max_steps=50"]))

        def test_next():
            open("next-ran", "w").close()
        """))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # no settings from folders above
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env |= {"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:xdist", "test_two.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-3000:]  # pytest's code for an interrupted run
    assert "SignalInterrupted: interrupted at step 1; checkpoint saved" in proc.stdout
    assert "no tests ran" in proc.stdout  # the stopped test is not counted as failed...
    assert not (tmp_path / "next-ran").exists()  # ...and the next one never starts
