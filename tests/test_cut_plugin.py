"""The CUT plugin package (plugins/imtrans-cut) installs, is discovered only when installed,
can be excluded, and passes its own tests: the proof that a third-party package can add a
loss with parameters of its own and a trainer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import install_plugin, without_plugin

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "imtrans-cut"
RECIPES = [PLUGIN / "recipes" / "cut_photo2monet.toml",
           PLUGIN / "recipes" / "fastcut_photo2monet.toml"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Install the plugin into a private folder; return an environment that sees it."""
    env = install_plugin(PLUGIN, tmp_path_factory.mktemp("site"))
    env["OMP_NUM_THREADS"] = "1"  # tiny networks: one thread is faster and shares the cores
    return env


def imtrans(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imtrans", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT)


def rows(listing: str) -> dict[str, str]:
    """`imtrans list` rows: component name -> source."""
    return {line.split()[1]: line.split()[2] for line in listing.splitlines()[1:]
            if len(line.split()) > 2}


def test_not_listed_when_not_installed() -> None:
    env = without_plugin("imtrans-cut") | {"OMP_NUM_THREADS": "1"}
    out = imtrans(env, "list", "losses").stdout
    assert "patchnce" not in out and "l1" in out


def test_list_shows_patchnce_and_cut_from_the_plugin(installed: dict[str, str]) -> None:
    losses = imtrans(installed, "list", "losses")
    assert losses.returncode == 0, losses.stderr
    assert rows(losses.stdout)["patchnce"] == "imtrans-cut"
    assert rows(losses.stdout)["l1"] == "imtrans"
    assert rows(imtrans(installed, "list", "trainers").stdout)["cut"] == "imtrans-cut"
    plugins = imtrans(installed, "plugins").stdout
    assert "imtrans-cut" in plugins and "0.1.0" in plugins and "patchnce" in plugins


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipes_validate_with_the_head_counted(installed: dict[str, str], recipe: Path) -> None:
    proc = imtrans(installed, "validate", str(recipe))
    assert proc.returncode == 0, proc.stderr
    table = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    # The head of CUT's netF at ngf 64: 560,384 parameters (built at validation, on meta).
    assert table["losses.nce"][1:4] == ["patchnce", "560,384", "imtrans-cut"]
    assert table["trainer"][1:3] == ["cut", "imtrans-cut"]


def test_allowlist_excludes_the_plugin(installed: dict[str, str]) -> None:
    env = installed | {"IMTRANS_PLUGINS": "example_loss"}
    assert "patchnce" not in imtrans(env, "list", "losses").stdout
    proc = imtrans(env, "validate", str(RECIPES[0]))
    assert proc.returncode == 1 and "unknown trainer 'cut'" in proc.stderr
    # Named in the allowlist (entry point or distribution name), it loads.
    for name in ("cut", "imtrans-cut"):
        env = installed | {"IMTRANS_PLUGINS": name}
        assert "patchnce" in imtrans(env, "list", "losses").stdout


def test_the_plugin_own_tests_pass(installed: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(PLUGIN / "tests")], capture_output=True, text=True,
                          env=installed, cwd=PLUGIN)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
