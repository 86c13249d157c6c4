"""Windows and macOS: no POSIX-only import on the way to a command, Linux-only calls guarded,
and the run lock through ``filelock``.

There is no Windows or macOS machine here. What is checked instead, on Linux:

- a tiny training run, its resume and a ``translate`` run as the ``imtrans`` command does, in
  a Python where ``fcntl`` cannot be imported and ``os`` lacks what Windows lacks
  (``sched_getaffinity``, ``fork``, ``O_NOFOLLOW``, ``O_NONBLOCK``, ``O_CLOEXEC``; ``signal``
  lacks ``SIGHUP``), with loading processes started by ``spawn`` (the start method of macOS
  and Windows). ``filelock`` is imported before ``fcntl`` is taken away: it stands for the
  platform's lock, which it picks from ``sys.platform`` (``LockFileEx`` on Windows);
- every module of the package imports there, with ``resource``, ``termios``, ``pwd`` and
  ``grp`` gone too;
- the fallbacks one by one: links refused without ``O_NOFOLLOW``, the lock holder read where
  the lock's byte cannot be, cores counted without ``sched_getaffinity``, no ``prctl`` off Linux;
- the lock's guarantee: a lock held by a process killed with SIGKILL is free at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import BinaryIO

import pytest
from PIL import Image

from imtrans.runs.file_access import LinkedRunFileError, open_run_file
from imtrans.runs.lock import LOCK_NAME, RunDirBusyError, lock_run_dir

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")
TINY = ["data.load_size=36", "data.crop_size=32", "generator.ngf=4", "discriminator.ndf=4",
        "run.device=cpu", "data.max_items=2", "trainer.pool_size=0",
        "train.checkpoint_every=1", "train.log_every=1", "train.sample_every=100"]

#: What Windows lacks, taken away before imtrans is imported; then ``args`` run as the
#: ``imtrans`` command (``python -c PRELUDE args...``).
PRELUDE = textwrap.dedent('''
    import os, signal, sys

    import filelock  # binds fcntl now: it stands for Windows' LockFileEx (see the module doc)

    GONE = {"fcntl"} | set(sys.argv[1].split(",")[1:])

    class NotOnWindows:
        def find_spec(self, name, path=None, target=None):
            if name in GONE:
                raise ModuleNotFoundError(f"No module named {name!r} (as on Windows)",
                                          name=name)
            return None

    for name in GONE:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, NotOnWindows())
    for name in ("sched_getaffinity", "fork", "O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC"):
        delattr(os, name)
    del signal.SIGHUP
    try:
        import fcntl
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the simulation is broken: fcntl was imported")

    if __name__ == "__main__":
        import multiprocessing

        multiprocessing.set_start_method("spawn")  # macOS' and Windows' way
        from imtrans.cli import main

        sys.argv = ["imtrans", *sys.argv[2:]]
        main()
''')


def as_on_windows(*args: str, gone: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``imtrans ARGS`` in a Python without ``fcntl`` (and ``gone``) and without Linux's
    extras (see :data:`PRELUDE`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env |= {"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", PRELUDE, ",".join(["-", *gone]), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def test_train_resume_and_translate_without_fcntl_or_linux_calls(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    tiny = [*TINY, f"run.output_dir={runs}", "run.name=r"]
    # One loading process, started by spawn: the dataset and its worker set-up are pickled.
    trained = as_on_windows("run", CYCLEGAN, *sets(*tiny, "data.num_workers=1",
                                                   "train.max_steps=1"))
    assert trained.returncode == 0, trained.stderr
    assert "Traceback" not in trained.stderr
    run_dir = runs / "r"
    assert "finished at step 1" in trained.stderr + trained.stdout
    first = run_dir / "checkpoints" / "step_00000001.safetensors"
    assert first.is_file()
    # The lock's record, after the byte Windows' lock covers, names the process that trained.
    record = (run_dir / LOCK_NAME).read_bytes()
    assert record[:1] == b"\n"
    assert json.loads(record[1:])["command"][:2] == ["imtrans", "run"]

    resumed = as_on_windows("run", CYCLEGAN, *sets(*tiny, "data.num_workers=0",
                                                   "train.max_steps=2"),
                            "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    said = resumed.stderr + resumed.stdout
    assert f"resuming {run_dir} from step 1 ({first})" in said, said
    assert "finished at step 2" in said
    second = sorted((run_dir / "checkpoints").glob("step_00000002*.safetensors"))
    assert len(second) == 1
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [record["step"] for record in records if "losses" in record]
    assert steps == [1, 2], steps  # continued from step 1: step 1 not trained again

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 40), (200, 120, 30)).save(photos / "a.png")
    out = tmp_path / "out"
    translated = as_on_windows("translate", str(run_dir), str(photos), str(out),
                               "--device", "cpu")
    assert translated.returncode == 0, translated.stderr
    assert f"with {second[0]} (step 2" in translated.stderr + translated.stdout
    with Image.open(out / "a.png") as image:
        assert image.mode == "RGB" and min(image.size) > 0
        assert image.getextrema() != ((200, 200), (120, 120), (30, 30))  # translated


def test_every_module_imports_without_posix_only_modules() -> None:
    script = textwrap.dedent('''
        import importlib, pkgutil, imtrans
        failed = []
        for module in pkgutil.walk_packages(imtrans.__path__, "imtrans."):
            try:
                importlib.import_module(module.name)
            except Exception as exc:
                failed.append(f"{module.name}: {exc!r}")
        print("\\n".join(failed) or "all imported")
    ''')
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    prelude = PRELUDE.split('if __name__ == "__main__":')[0]
    done = subprocess.run([sys.executable, "-c", prelude + script,
                           ",".join(["-", "resource", "termios", "pwd", "grp"])],
                          cwd=ROOT, env=env | {"OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "all imported", done.stdout


# --- the lock --------------------------------------------------------------------------------


HOLD = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from imtrans.runs.lock import lock_run_dir
    lock = lock_run_dir(Path(sys.argv[1]))
    print("held", flush=True)
    time.sleep(600)
''')


def test_a_lock_of_a_process_killed_with_sigkill_is_free_at_once(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "--some-flag"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(RunDirBusyError) as busy:
            lock_run_dir(tmp_path)
        message = str(busy.value)
        assert message.startswith(f"{tmp_path} is in use by process {holder.pid} on ")
        assert f"(imtrans {tmp_path} --some-flag), started 20" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with lock_run_dir(tmp_path) as lock:  # nothing stale: the system freed it with the process
        assert lock.path == tmp_path / LOCK_NAME
        assert json.loads(lock.path.read_bytes()[1:])["pid"] == os.getpid()
    with lock_run_dir(tmp_path):  # and a released lock can be taken again
        pass


def test_the_holder_is_named_where_the_locked_byte_cannot_be_read(tmp_path: Path) -> None:
    """On Windows the holder's lock covers byte 0, and reading it there fails: the record
    starts at byte 1, and a waiting process reads it from there."""
    from imtrans.runs.lock import _holder

    reads: list[int] = []

    class FirstByteLocked:
        """A lock file as another process sees it on Windows while the lock is held."""

        def __init__(self, handle: BinaryIO) -> None:
            self.handle, self.position = handle, 0

        def seek(self, offset: int) -> None:
            self.position = self.handle.seek(offset)

        def read(self, size: int) -> bytes:
            reads.append(self.position)
            if self.position == 0:
                raise PermissionError(13, "The process cannot access the file because another "
                                          "process has locked a portion of the file")
            return self.handle.read(size)

    with lock_run_dir(tmp_path), (tmp_path / LOCK_NAME).open("rb") as handle:
        holder = _holder(FirstByteLocked(handle))  # type: ignore[arg-type]
    assert reads == [0, 1]
    assert holder.startswith(f"process {os.getpid()} on ")


# --- links without O_NOFOLLOW (Windows) ----------------------------------------------------------


@pytest.fixture
def without_o_nofollow(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC"):
        monkeypatch.delattr(os, name)


def test_without_o_nofollow_a_linked_lock_is_refused_and_its_target_kept(
        tmp_path: Path, without_o_nofollow: None) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"the user's own file\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).symlink_to(notes)
    with pytest.raises(LinkedRunFileError, match=f"is a symbolic link \\(to {notes}\\)"):
        lock_run_dir(run)
    (run / LOCK_NAME).unlink()
    os.link(notes, run / LOCK_NAME)
    with pytest.raises(LinkedRunFileError, match=r"is a hard link \(a file with 2 names\)"):
        lock_run_dir(run)
    assert notes.read_bytes() == b"the user's own file\n"
    (run / LOCK_NAME).unlink()
    with lock_run_dir(run):  # a regular file is locked as before
        assert (run / LOCK_NAME).read_bytes().startswith(b"\n{")


def test_without_o_nofollow_a_link_planted_while_opening_is_refused(
        tmp_path: Path, without_o_nofollow: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race O_NOFOLLOW closes: the name is checked before the open, and a link put there
    just before the open is found after it, before a byte is written."""
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"the user's own file\n")
    path = tmp_path / "metrics.jsonl"
    real_open = os.open

    def open_after_a_swap(name, flags, mode=0o777):
        if Path(name) == path:
            path.symlink_to(notes)
        return real_open(name, flags, mode)

    monkeypatch.setattr(os, "open", open_after_a_swap)
    with pytest.raises(LinkedRunFileError, match="is a symbolic link"):
        open_run_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    assert notes.read_bytes() == b"the user's own file\n"


# --- Linux-only calls --------------------------------------------------------------------------


def test_cores_are_counted_without_sched_getaffinity(monkeypatch: pytest.MonkeyPatch) -> None:
    from imtrans.data.workers import capped_workers, usable_cores
    from imtrans.recipe.schema import default_num_workers

    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert usable_cores() == 3
    assert default_num_workers() == 3
    assert capped_workers(8, "data.num_workers") == (
        3, "data.num_workers 8 is more than the 3 usable CPU cores; using 3")


def test_no_prctl_is_asked_for_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    from imtrans.core.distributed import die_with_parent

    def no_libc(*args: object, **kwargs: object) -> None:
        raise AssertionError("libc was loaded off Linux")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    for platform in ("darwin", "win32"):
        monkeypatch.setattr(sys, "platform", platform)
        die_with_parent(signal.SIGTERM)  # returns: nothing to ask for there
