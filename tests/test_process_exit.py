"""The console script ends its process without Python's teardown, after everything that has
effects: threads joined, atexit handlers run, Python's and C's streams flushed, the exit code
kept (``imtrans.cli.process_exit``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

#: A process that runs ``main`` (defined by each test) through ``run_then_end_process``. An
#: object left at module level prints from ``__del__`` at Python's teardown, which the fast
#: exit skips.
_PRELUDE = textwrap.dedent("""
    import atexit, ctypes, sys, threading, time
    from pathlib import Path
    from imtrans.cli.process_exit import run_then_end_process

    class Teardown:
        def __del__(self):
            print("teardown ran", file=sys.stderr)

    left_at_exit = Teardown()
    folder = Path(sys.argv[1])
""")


def run_process(body: str, folder: Path) -> subprocess.CompletedProcess[str]:
    script = _PRELUDE + textwrap.dedent(body) + "\nrun_then_end_process(main)\n"
    # Buffered streams, as by default: PYTHONUNBUFFERED would unbuffer C's stdout too.
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True,
                          text=True, timeout=60, env=environment)


def test_exit_code_threads_atexit_and_buffered_output_survive(tmp_path: Path) -> None:
    result = run_process("""
        def late_write():
            time.sleep(0.3)
            (folder / "thread.txt").write_text("thread")

        def main():
            atexit.register(lambda: (folder / "atexit.txt").write_text("atexit"))
            threading.Thread(target=late_write).start()  # not a daemon: the exit waits for it
            print("python line")  # stdout is a pipe: block-buffered until the exit flushes it
            ctypes.CDLL(None).printf(b"c line\\n")  # buffered by the C library
            raise SystemExit(3)
    """, tmp_path)
    assert result.returncode == 3, result.stderr
    assert (tmp_path / "thread.txt").read_text() == "thread"
    assert (tmp_path / "atexit.txt").read_text() == "atexit"
    assert "python line" in result.stdout
    assert "c line" in result.stdout
    assert "teardown ran" not in result.stderr  # the teardown itself was skipped


@pytest.mark.parametrize(("ending", "code"), [("return None", 0), ("raise SystemExit(None)", 0),
                                              ("raise SystemExit(0)", 0),
                                              ("raise SystemExit(2)", 2)])
def test_the_code_of_a_normal_end(tmp_path: Path, ending: str, code: int) -> None:
    result = run_process(f"""
        def main():
            {ending}
    """, tmp_path)
    assert result.returncode == code
    assert "teardown ran" not in result.stderr


def test_a_message_or_an_error_takes_pythons_own_exit(tmp_path: Path) -> None:
    message = run_process("""
        def main():
            raise SystemExit("stopped: a reason")
    """, tmp_path)
    assert message.returncode == 1
    assert "stopped: a reason" in message.stderr
    assert "teardown ran" in message.stderr  # the normal exit, teardown included

    error = run_process("""
        def main():
            raise RuntimeError("a bug")
    """, tmp_path)
    assert error.returncode == 1
    assert "Traceback" in error.stderr and "RuntimeError: a bug" in error.stderr


def test_an_unflushable_stdout_exits_120_as_python_does(tmp_path: Path) -> None:
    result = run_process("""
        class ClosedPipe:
            def write(self, text):
                return len(text)
            def flush(self):
                raise BrokenPipeError(32, "Broken pipe")

        def main():
            sys.stdout = ClosedPipe()
    """, tmp_path)
    assert result.returncode == 120


def test_the_console_script_and_module_end_this_way(tmp_path: Path) -> None:
    scripts = {point.name: point.value for point in entry_points(group="console_scripts")}
    assert scripts["imtrans"] == "imtrans.cli:console_main"
    for module in ("imtrans", "imtrans.cli"):
        source = Path(__import__(module, fromlist=["__main__"]).__file__).parent / "__main__.py"
        assert "console_main()" in source.read_text()
    result = subprocess.run([sys.executable, "-m", "imtrans", "--version"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "imtrans, version" in result.stdout
    refused = subprocess.run([sys.executable, "-m", "imtrans", "no-such-command"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "No such command" in refused.stderr


def test_main_itself_still_raises_for_a_calling_program() -> None:
    from imtrans.cli import main

    argv, sys.argv = sys.argv, ["imtrans", "--version"]
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = argv
    assert exited.value.code == 0
