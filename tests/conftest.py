"""Shared fixtures: tiny trained runs that inference, evaluation, export and report tests use."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from filelock import FileLock

# One thread for torch in each test process and in the processes tests start (they inherit
# the environment): the suite's networks are tiny, and pytest-xdist runs one test process per
# core (pyproject.toml), so more threads only fight over the cores; on a busy 2-core machine a
# 2-thread Inception pass ran ten times slower than a 1-thread one. Set before torch is
# imported (it reads the variable once); a value the user set is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]

#: The files that take longest (half a minute to two minutes each on one core, measured with
#: ``--durations=0``): they start first, so the test processes, which take whole files
#: (``--dist loadfile``), finish together instead of one running a long file alone at the end.
#: Longest first; the order of the other files and of the tests within a file is kept.
LONGEST_FILES = [
    "tests/test_training.py", "tests/test_evaluation.py", "tests/test_crash_safety.py",
    "tests/test_distributed.py", "tests/test_cut_plugin.py", "tests/test_hostile_runs.py",
    "tests/test_step_compile.py", "tests/test_hostile_bounds.py", "tests/test_no_hang.py",
    "tests/test_hostile_inputs.py", "tests/test_soak.py", "tests/test_bench_suite.py",
    "tests/test_example_plugin.py", "tests/test_portability.py", "tests/test_export.py",
    "tests/test_types.py", "tests/test_run_dir_safety.py", "tests/test_bad_data.py",
    "tests/test_doc_examples.py",
]


def pytest_xdist_auto_num_workers() -> int:
    """``-n auto``: one test process per CPU this process may use (its affinity: taskset and
    containers narrow it), hyperthreads included; pytest-xdist's own count, where psutil is
    installed, is of physical cores, one on a 2-vCPU machine that shares a core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests of :data:`LONGEST_FILES` first (every test process orders them alike)."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


#: Tiny networks at 32 px on the CPU: a run of a few steps takes a second or two.
TINY_RUN = {
    "data.load_size": 36, "data.crop_size": 32, "generator.ngf": 4, "discriminator.ndf": 4,
    "data.num_workers": 0, "run.device": "cpu", "train.log_every": 1, "train.sample_every": 2,
}


def install_plugin(package: Path, target: Path) -> dict[str, str]:
    """pip-install the plugin package at ``package`` into the folder ``target`` (not into the
    test environment); return an environment, without ``IMTRANS_*`` variables, that sees it."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(package)],
        check=True, capture_output=True, text=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")])
    return env


def without_plugin(distribution: str) -> dict[str, str]:
    """An environment, without ``IMTRANS_*`` variables, in which the plugin ``distribution``
    is not loaded: where it is installed (as users install it), autoloading is turned off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    try:
        importlib.metadata.distribution(distribution)
        env["IMTRANS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    except importlib.metadata.PackageNotFoundError:
        pass
    return env


def registry_with_plugin(monkeypatch: pytest.MonkeyPatch, name: str, plugin: object) -> Any:
    """The built-ins and ``plugin`` (no installed plugin), as the registry of ``imtrans run``
    and ``imtrans validate`` too; returns it for the library calls of a test."""
    from imtrans.catalogue.plugins import load_components

    registry = load_components(autoload=False, extra_plugins=[(name, plugin)])
    for module in ("imtrans.cli.run", "imtrans.cli.validate"):
        monkeypatch.setattr(f"{module}.components", lambda: registry)
    return registry


@pytest.fixture
def builtins_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The built-in components only, whatever plugins this environment holds (a test file
    asks for it with ``pytestmark = pytest.mark.usefixtures("builtins_only")``)."""
    import imtrans

    monkeypatch.setenv("IMTRANS_DISABLE_PLUGIN_AUTOLOAD", "1")
    imtrans.components.cache_clear()
    yield
    imtrans.components.cache_clear()


def run_files_snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file's modification time and bytes: equal snapshots mean nothing was written.
    The lock file is left out: it notes who last held the directory, not the run."""
    from imtrans.runs.lock import LOCK_NAME

    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_NAME}


def error_line(result: Result) -> str:
    """The one ``error:`` line of a command that failed with exit status 1, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive (a wheel, a dataset download) holding ``members``, in memory."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def cli_error(result: Result) -> str:
    """The one-line error of a failed command; fails the test on a traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


def train_tiny(tmp_path: Path, recipe: str, steps: int = 4, **overrides: object) -> Path:
    """Train ``recipes/<recipe>.toml`` for ``steps`` tiny steps in ``tmp_path``; return the
    run directory. Pix2pix runs use a 6-level U-Net (64 px: the smallest with dropout)."""
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.runner import fit

    settings: dict[str, object] = dict(TINY_RUN)
    if recipe.startswith("pix2pix"):
        settings |= {"generator.name": "unet", "generator.num_downs": 6,
                     "data.load_size": 72, "data.crop_size": 64}
    settings |= {"train.max_steps": steps, "run.output_dir": str(tmp_path / "runs")}
    settings |= {k.replace("__", "."): v for k, v in overrides.items()}
    sets = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={str(v).lower()}"
            if isinstance(v, bool) else f"{k}={v}" for k, v in settings.items()]
    result = fit(load_recipe(ROOT / "recipes" / f"{recipe}.toml", sets))
    return result.run_dir


@pytest.fixture(scope="session")
def pix2pix_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step pix2pix run (U-Net with batch norm and dropout, 64 px) on the bundled
    edges2shoes."""
    return train_tiny(tmp_path_factory.mktemp("pix2pix"), "pix2pix_edges2shoes")


@pytest.fixture(scope="session")
def cyclegan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step CycleGAN run (ResNet, instance norm) on the bundled monet2photo."""
    return train_tiny(tmp_path_factory.mktemp("cyclegan"), "cyclegan_photo2monet")


# --- a real browser (report pages, translate --html) -------------------------------------


def find_chromium() -> str | None:
    """IMTRANS_CHROMIUM, or a Chromium on PATH."""
    names = [os.environ.get("IMTRANS_CHROMIUM", ""), "chromium", "chromium-browser",
             "google-chrome"]
    return next((shutil.which(n) for n in names if n and shutil.which(n)), None)


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A headless Chromium: IMTRANS_CHROMIUM, one on PATH, or Debian's package installed now."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no Chromium found (set IMTRANS_CHROMIUM, or install chromium); "
                    "installing it needs root and apt-get")
    # The test processes (pytest-xdist) take turns, through a lock in the folder their
    # temporary folders share: a second `apt-get update` at the same time would fail on apt's
    # own lock and skip that process's browser tests. The next one in finds it installed.
    with FileLock(tmp_path_factory.getbasetemp().parent / "chromium-install.lock"):
        return find_chromium() or _install_chromium()


def _install_chromium() -> str:
    """Install Debian's chromium with apt-get (as root); skip the test when that fails."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    commands = [["apt-get", "update"],
                ["apt-get", "install", "-y", "--no-install-recommends",
                 "-o", "DPkg::Lock::Timeout=300", "chromium"]]
    for command in commands:
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=900,
                           env=env)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            pytest.skip(f"no Chromium, and `{' '.join(command)}` failed: {detail[-300:]}")
    return shutil.which("chromium") or pytest.skip("chromium installed but not on PATH")


def browse(chromium: str, page: Path, profile: Path, *flags: str) -> str:
    """Open ``page`` in headless ``chromium`` with ``flags`` (``--dump-dom``,
    ``--screenshot=...``); return what it printed (the DOM after its scripts ran)."""
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
               *flags, page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
