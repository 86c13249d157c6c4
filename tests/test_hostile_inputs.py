"""What imtrans reads and runs: nothing from the working directory's git configuration runs,
no file named by a user blocks or is read without bound, and no download runs without end.

Every hostile thing (a checkout whose ``.git/config`` runs a program, FIFOs, devices, link
loops, huge "recipes", servers that stream forever, trickle or lie about their length) is made
here in ``tmp_path`` or on 127.0.0.1. Commands that could hang run under a hard timeout, so a
regression fails instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from imtrans.core.git_head import head_commit
from imtrans.data.download import download
from imtrans.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
HARD_TIMEOUT = 120  # seconds; every command here ends in a few when it works

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only (FIFOs)")


def imtrans(*args: str, cwd: Path, timeout: float = HARD_TIMEOUT,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m imtrans ARGS`` in ``cwd`` under a hard timeout (a hang fails)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "imtrans", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line of a failed command (no traceback)."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


# --- git: a program configured by the working directory never runs ------------------------

GIT = shutil.which("git")


def hostile_checkout(folder: Path) -> tuple[Path, str]:
    """A git checkout whose config runs a program that creates ``MARKER`` (through
    ``core.fsmonitor``, ``core.pager``, ``diff.external`` and a clean filter); return the
    marker's path and the checkout's commit."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "MARKER"
    script = folder / "hook.sh"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\ncat\n")
    script.chmod(0o755)
    git = [str(GIT), "-C", str(folder), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "."], check=True)
    (folder / "tracked.txt").write_text("one\n")
    (folder / ".gitattributes").write_text("*.txt filter=evil\n")
    subprocess.run([*git, "add", "tracked.txt", ".gitattributes"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    for key in ("core.fsmonitor", "core.pager", "diff.external", "filter.evil.clean",
                "core.sshCommand"):
        subprocess.run([*git, "config", key, str(script)], check=True)
    (folder / "tracked.txt").write_text("two\n")  # modified: git status would run the filter
    return marker, commit


@pytest.mark.skipif(GIT is None, reason="needs git to make the checkout")
def test_git_itself_runs_the_checkouts_program(tmp_path: Path) -> None:
    """The hazard is real: plain git in such a checkout runs the configured program (so the
    tests below, which find no marker, would see one if imtrans ran git)."""
    marker, _ = hostile_checkout(tmp_path / "repo")
    subprocess.run([str(GIT), "status", "--porcelain", "--untracked-files=no"],
                   cwd=tmp_path / "repo", capture_output=True, timeout=30)
    assert marker.exists()


@pytest.mark.skipif(GIT is None, reason="needs git to make the checkout")
def test_a_run_and_an_import_record_the_commit_without_running_git(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    marker, commit = hostile_checkout(repo)
    proc = imtrans("run", str(ROOT / "recipes" / "pix2pix_edges2shoes.toml"),
                   "--set", "generator.name=unet", "--set", "generator.num_downs=5",
                   "--set", "generator.ngf=4", "--set", "discriminator.ndf=4",
                   "--set", "data.load_size=36", "--set", "data.crop_size=32",
                   "--set", "data.num_workers=0", "--set", "data.batch_size=1",
                   "--set", "run.device='cpu'", "--set", "train.max_steps=1",
                   "--set", f"run.output_dir='{tmp_path / 'runs'}'", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    run_dirs = list((tmp_path / "runs").iterdir())
    environment = json.loads((run_dirs[0] / "environment.json").read_text())
    assert environment["git_commit"] == commit
    assert not marker.exists()

    import torch

    from imtrans.nn import generators
    official = tmp_path / "official"
    official.mkdir()
    torch.save(generators.resnet_6blocks(ngf=4).state_dict(), official / "latest_net_G.pth")
    proc = imtrans("import", str(official / "latest_net_G.pth"), str(tmp_path / "imported"),
                   cwd=repo)
    assert proc.returncode == 0, proc.stderr
    environment = json.loads((tmp_path / "imported" / "environment.json").read_text())
    assert environment["git_commit"] == commit
    assert not marker.exists()


@pytest.mark.skipif(GIT is None, reason="needs git to make the checkouts")
def test_the_commit_is_read_from_refs_packed_refs_worktrees_and_sub_folders(
        tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    marker, commit = hostile_checkout(repo)
    (repo / "deep" / "er").mkdir(parents=True)
    assert head_commit(repo) == commit and head_commit(repo / "deep" / "er") == commit
    git = [str(GIT), "-C", str(repo)]
    subprocess.run([*git, "pack-refs", "--all"], check=True, capture_output=True)
    for loose in (repo / ".git" / "refs" / "heads").rglob("*"):
        if loose.is_file():
            pytest.fail(f"pack-refs left {loose}")
    assert head_commit(repo) == commit  # from packed-refs
    # A linked worktree: .git is a file "gitdir: ...", HEAD lives in the worktree's folder.
    subprocess.run([*git, "-c", "core.fsmonitor=false", "worktree", "add", "-q", "--detach",
                    str(tmp_path / "wt")], check=True, capture_output=True)
    assert (tmp_path / "wt" / ".git").is_file()
    assert head_commit(tmp_path / "wt") == commit
    # A detached HEAD, an unborn branch and no checkout at all.
    (repo / ".git" / "HEAD").write_text(commit + "\n")
    assert head_commit(repo) == commit
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/never\n")
    assert head_commit(repo) is None
    # HEAD replaced by a FIFO: read as "unknown", never opened for a blocking read.
    (repo / ".git" / "HEAD").unlink()
    os.mkfifo(repo / ".git" / "HEAD")
    assert head_commit(repo) is None
    # A ref name that climbs out of .git is not followed.
    (repo / ".git" / "HEAD").unlink()
    (repo / ".git" / "HEAD").write_text("ref: refs/../../../outside\n")
    (tmp_path / "outside").write_text(commit + "\n")
    assert head_commit(repo) is None
    outside = tmp_path / "plain"
    outside.mkdir()
    assert head_commit(outside) in (None, head_commit(tmp_path))
    assert not marker.exists()


# --- downloads: bounded in bytes and in time, and a .part that cannot be the file is gone ---

class _HostileHandler(BaseHTTPRequestHandler):
    """``/forever``: bytes without end and no length; ``/more``: an honest Content-Length
    larger than expected; ``/trickle``: 1000 bytes announced, one sent every 0.2 s;
    ``/length/<text>``: ``Content-Length: <text>``. Anything after is ignored (a mirror
    appends ``/<name>.pth``)."""

    def do_GET(self) -> None:
        mode, _, rest = self.path.strip("/").partition("/")
        try:
            if mode == "forever":
                self.send_response(200)
                self.end_headers()
                block = b"\0" * 65536
                while True:
                    self.wfile.write(block)
            elif mode == "more":
                self.send_response(200)
                self.send_header("Content-Length", str(10_000))
                self.end_headers()
                self.wfile.write(b"x" * 10_000)
            elif mode == "trickle":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(1000):
                    self.wfile.write(b"t")
                    self.wfile.flush()
                    time.sleep(0.2)
            elif mode == "length":
                self.send_response(200)
                self.send_header("Content-Length", rest.partition("/")[0])
                self.end_headers()
                self.wfile.write(b"y" * 100)
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_server() -> Iterator[str]:
    """A server on 127.0.0.1 that answers as :class:`_HostileHandler`; yields its root URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _timed_download(url: str, dest: Path, **kwargs: object) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(DataError) as caught:
        download(url, dest, **kwargs)  # type: ignore[arg-type]
    return str(caught.value), time.monotonic() - started


def test_an_endless_stream_stops_at_the_ceiling_and_its_part_is_deleted(
        hostile_server: str, tmp_path: Path) -> None:
    dest = tmp_path / "file.zip"
    message, took = _timed_download(f"{hostile_server}/forever", dest, max_bytes=1 << 20,
                                    timeout=5)
    assert "the server sent more than the most accepted, 1,048,576 bytes" in message
    assert "was deleted" in message and took < 30
    assert not dest.with_suffix(".zip.part").exists() and not dest.exists()
    # With a known size, the size is the limit.
    message, _ = _timed_download(f"{hostile_server}/forever", dest, expected_size=5000,
                                 timeout=5)
    assert "more than the expected 5,000 bytes" in message
    assert not dest.with_suffix(".zip.part").exists()


def test_a_longer_file_than_expected_is_refused_from_its_length_and_the_part_deleted(
        hostile_server: str, tmp_path: Path) -> None:
    dest = tmp_path / "file.zip"
    part = dest.with_suffix(".zip.part")
    part.write_bytes(b"x" * 10)  # an earlier, resumable-looking part
    message, _ = _timed_download(f"{hostile_server}/more", dest, expected_size=5000, timeout=5)
    assert "the server announced 10,000 bytes, more than the expected 5,000" in message
    assert not part.exists() and not dest.exists()


def test_a_trickle_ends_at_the_deadline_and_keeps_its_part(hostile_server: str,
                                                           tmp_path: Path) -> None:
    dest = tmp_path / "file.zip"
    message, took = _timed_download(f"{hostile_server}/trickle", dest, deadline=2, timeout=5)
    assert "passed its deadline" in message and "run it again to resume" in message
    assert 1.5 < took < 15
    part = dest.with_suffix(".zip.part")
    assert 0 < part.stat().st_size < 1000  # a prefix of the announced file: kept to resume


@pytest.mark.parametrize("length", ["abc", "-5"])
def test_an_invalid_content_length_is_one_line(hostile_server: str, tmp_path: Path,
                                               length: str) -> None:
    message, _ = _timed_download(f"{hostile_server}/length/{length}", tmp_path / "f.zip",
                                 timeout=5)
    assert message.endswith(f"the server sent an invalid Content-Length {length!r}")
    assert not (tmp_path / "f.zip.part").exists()


def test_models_download_is_bounded_from_the_command_line(hostile_server: str,
                                                          tmp_path: Path) -> None:
    """Through ``imtrans models download``: an invalid length and a trickle past
    ``--deadline`` are one error line each, and the command ends within seconds."""
    base = ["models", "download", "pix2pix_facades_label2photo", "--dir", str(tmp_path / "runs"),
            "--timeout", "5"]
    line = one_error(imtrans(*base, "--base-url", f"{hostile_server}/length/abc",
                             cwd=tmp_path, timeout=60))
    assert line.endswith("the server sent an invalid Content-Length 'abc'")
    started = time.monotonic()
    line = one_error(imtrans(*base, "--base-url", f"{hostile_server}/trickle", "--deadline", "2",
                             cwd=tmp_path, timeout=60))
    assert "passed its deadline" in line and time.monotonic() - started < 60


# --- files named by a user: regular files of sane size only, and said what they are -------

def hostile_files(folder: Path) -> dict[str, Path]:
    """A FIFO, a character device, a symbolic link loop, a link to nothing and a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "pipe")
    (folder / "loop_a").symlink_to(folder / "loop_b")
    (folder / "loop_b").symlink_to(folder / "loop_a")
    (folder / "dangling").symlink_to(folder / "nothing")
    (folder / "a_folder").mkdir()
    return {"fifo": folder / "pipe", "device": Path("/dev/zero"), "loop": folder / "loop_a",
            "dangling": folder / "dangling", "folder": folder / "a_folder"}


#: How each kind is named in a message.
SAID = {"fifo": "is a FIFO (named pipe), not a regular file",
        "device": "is a character device, not a regular file",
        "loop": "is a symbolic link loop",
        "dangling": "is a symbolic link to ",
        "folder": "is a folder, not a file"}

_CLI_CASES = '''
import json, sys
from click.testing import CliRunner
from imtrans.cli import cli
results = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(cli, args)
    results.append([result.exit_code, result.output])
print(json.dumps(results))
'''


def run_cli_cases(cases: list[list[str]], cwd: Path) -> list[tuple[int, str]]:
    """Run each argument list through the CLI in one fresh process under a hard timeout: a
    command that blocks fails the test (TimeoutExpired) instead of hanging the suite."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _CLI_CASES, json.dumps(cases)], cwd=cwd,
                          env=environment, capture_output=True, text=True,
                          timeout=HARD_TIMEOUT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return [(code, output) for code, output in json.loads(proc.stdout.splitlines()[-1])]


def single_error(code: int, output: str) -> str:
    assert code == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    return errors[0]


def test_recipes_that_are_not_regular_files_are_refused_at_once(tmp_path: Path) -> None:
    files = hostile_files(tmp_path / "h")
    kinds = [kind for kind in files if kind != "folder"]  # click refuses a folder itself
    cases = [[command, str(files[kind]), *extra]
             for kind in kinds
             for command, extra in (("validate", []),
                                    ("run", ["--set", f"run.output_dir='{tmp_path / 'runs'}'"]))]
    results = run_cli_cases(cases, tmp_path)
    for (command, path, *_), (code, output), kind in zip(
            cases, results, [k for k in kinds for _ in range(2)], strict=True):
        line = single_error(code, output)
        assert line.startswith(f"error: recipe {path} {SAID[kind]}"), (command, line)
    assert not (tmp_path / "runs").exists()


def test_a_huge_recipe_is_refused_by_its_size_before_it_is_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.toml"
    with huge.open("w") as handle:  # valid TOML, 10 MB: it took 110 s and 2 GB to refuse
        handle.write("[run]\nname = 'x'\n[notes]\n")
        for index in range(400_000):
            handle.write(f"k{index} = {index}\n")
    size = huge.stat().st_size
    assert size > 4 << 20
    started = time.monotonic()
    results = run_cli_cases([["validate", str(huge)], ["run", str(huge)]], tmp_path)
    for code, output in results:
        line = single_error(code, output)
        assert line == (f"error: recipe {huge} is {size / (1 << 20):.1f} MiB; a recipe is at "
                        "most 1.0 MiB, so this is not one (refused before reading it)")
    assert time.monotonic() - started < HARD_TIMEOUT
    # A recipe just under the limit is read (and refused for what it says, not its size).
    near = tmp_path / "near.toml"
    near.write_text("# padding\n" * ((1 << 20) // 10 - 10) + "[run]\nname = 'x'\n")
    line = single_error(*run_cli_cases([["validate", str(near)]], tmp_path)[0])
    assert "MiB" not in line


def test_checkpoints_that_are_not_regular_files_are_refused(tmp_path: Path) -> None:
    files = hostile_files(tmp_path / "h")
    recipe = str(ROOT / "recipes" / "pix2pix_edges2shoes.toml")
    image = tmp_path / "in.png"
    from PIL import Image
    Image.new("RGB", (32, 32)).save(image)
    for kind in ("fifo", "device"):
        checkpoint = str(files[kind])
        cases = [["translate", checkpoint, str(image), str(tmp_path / "out")],
                 ["eval", checkpoint],
                 ["export", checkpoint, "--format", "torchscript", "-o", str(tmp_path / "x.pt")],
                 ["run", recipe, "--resume", checkpoint, "--set",
                  f"run.output_dir='{tmp_path / 'runs'}'"],
                 ["import", checkpoint, str(tmp_path / "imported")]]
        for args, (code, output) in zip(cases, run_cli_cases(cases, tmp_path), strict=True):
            line = single_error(code, output)
            what = "official checkpoint" if args[0] == "import" else "checkpoint"
            assert line == f"error: {what} {checkpoint} {SAID[kind]}", (args, line)
    # Names that do not resolve are said to be what they are, by the argument's check.
    kinds = [kind for kind in ("loop", "dangling") for _ in range(3)]
    cases = [args for kind in ("loop", "dangling")
             for args in (["eval", str(files[kind])], ["import", str(files[kind]), "x"],
                          ["translate", str(files[kind]), str(image), "out"])]
    for kind, (code, output) in zip(kinds, run_cli_cases(cases, tmp_path), strict=True):
        assert code == 2 and f"'{files[kind]}' {SAID[kind]}" in output, output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "imported").exists()


def test_an_input_image_named_alone_says_what_it_is(tmp_path: Path) -> None:
    files = hostile_files(tmp_path / "h")
    for kind in ("fifo", "loop", "dangling"):
        code, output = run_cli_cases([["translate", str(files["fifo"]), str(files[kind]),
                                       str(tmp_path / "out")]], tmp_path)[0]
        line = single_error(code, output)
        assert line == (f"error: input {files[kind]} {SAID[kind]}" + (
            f"{files[kind].parent / 'nothing'}, which does not exist" if kind == "dangling" else
            " (or a chain of more than 40 links)" if kind == "loop" else "")
            + "; give an image file, a folder or a glob pattern"), line


_INCEPTION_CASES = '''
import json, os, sys
from imtrans.errors import EvaluationError
from imtrans.evaluation.inception import find_inception, read_inception
out = []
for path in json.loads(sys.argv[1]):
    for call in (lambda: find_inception(path), lambda: read_inception(path, trust=True),
                 lambda: read_inception(path)):
        try:
            call()
            out.append("no error")
        except EvaluationError as exc:
            out.append(str(exc))
os.environ["IMTRANS_INCEPTION"] = json.loads(sys.argv[1])[0]
try:
    find_inception()
except EvaluationError as exc:
    out.append(str(exc))
print(json.dumps(out))
'''


def test_inception_weights_that_are_not_regular_files_are_refused(tmp_path: Path) -> None:
    """By ``--inception``'s path (find_inception), ``IMTRANS_INCEPTION``, and the read itself,
    trusted or not: a FIFO or ``/dev/zero`` would block or never end."""
    files = hostile_files(tmp_path / "h")
    paths = [str(files["fifo"]), str(files["device"]), str(files["loop"])]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _INCEPTION_CASES, json.dumps(paths)],
                          env=environment, capture_output=True, text=True,
                          timeout=HARD_TIMEOUT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    messages = json.loads(proc.stdout.splitlines()[-1])
    expected = [f"Inception weights file {path} {SAID[kind]}"
                for path, kind in zip(paths, ("fifo", "device", "loop"), strict=True)
                for _ in range(3)] + [f"Inception weights file {paths[0]} {SAID['fifo']}"]
    for got, want in zip(messages, expected, strict=True):
        assert got.startswith(want), (got, want)


def test_a_report_skips_run_files_that_are_not_regular_files(tmp_path: Path) -> None:
    """A FIFO or device in place of a run's metrics, environment, best record or sample is
    left out of the report, which is written; nothing blocks."""
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "recipe.toml").write_text("[run]\nname = 'run'\n")
    for name in ("metrics.jsonl", "environment.json", "best.json", "samples/step_00000001.png",
                 "samples/step_00000001.json"):
        os.mkfifo(run / name)
    code, output = run_cli_cases([["report", str(run)]], tmp_path)[0]
    assert code == 0, output
    assert (run / "report.html").is_file()
