"""The example plugin package installs, is discovered through its entry point, and works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import install_plugin, without_plugin

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "imtrans-example-loss"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Install the plugin into a private folder; return an environment that sees it."""
    return install_plugin(PLUGIN, tmp_path_factory.mktemp("site"))


def imtrans(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imtrans", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT)


def test_not_listed_when_not_installed() -> None:
    out = imtrans(without_plugin("imtrans-example-loss"), "list", "losses").stdout
    assert "charbonnier" not in out


def test_list_shows_the_plugin_losses_with_their_source(installed: dict[str, str]) -> None:
    proc = imtrans(installed, "list", "losses")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[1]: line.split()[2] for line in proc.stdout.splitlines()[1:]}
    assert rows["charbonnier"] == "imtrans-example-loss"
    assert rows["ssim"] == "imtrans-example-loss"
    assert rows["l1"] == "imtrans"
    plugins = imtrans(installed, "plugins").stdout
    assert "example_loss" in plugins and "0.1.0" in plugins and "charbonnier, ssim" in plugins


def test_a_recipe_uses_the_plugin_loss_by_name(installed: dict[str, str]) -> None:
    recipe = PLUGIN / "recipes" / "pix2pix_edges2shoes_charbonnier.toml"
    proc = imtrans(installed, "validate", str(recipe))
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    assert rows["losses.reconstruction"][1:3] == ["charbonnier", "imtrans-example-loss"]
    assert rows["losses.structure"][1] == "ssim"
    assert "on reconstruction" in proc.stdout


def test_the_plugin_loss_trains(installed: dict[str, str], tmp_path) -> None:
    recipe = PLUGIN / "recipes" / "pix2pix_edges2shoes_charbonnier.toml"
    overrides = ["data.load_size=36", "data.crop_size=32", "generator.name=unet",
                 "generator.num_downs=5", "generator.ngf=4", "discriminator.ndf=4",
                 "data.num_workers=0", "run.device=cpu", "train.max_steps=2", "train.log_every=1"]
    proc = subprocess.run(
        [sys.executable, "-m", "imtrans", "run", str(recipe),
         *[arg for o in overrides for arg in ("--set", o)]],
        capture_output=True, text=True, env=installed, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = (tmp_path / "runs/pix2pix_edges2shoes_charbonnier/metrics.jsonl").read_text()
    first = json.loads(metrics.splitlines()[0])["losses"]
    assert set(first) == {"D", "G", "G_adv", "reconstruction", "structure"}
    assert first["G"] == pytest.approx(first["G_adv"] + first["reconstruction"]
                                       + first["structure"], rel=1e-5)


def test_allowlist_excludes_the_plugin(installed: dict[str, str]) -> None:
    env = installed | {"IMTRANS_PLUGINS": "another-plugin"}
    assert "charbonnier" not in imtrans(env, "list", "losses").stdout
    recipe = PLUGIN / "recipes" / "pix2pix_edges2shoes_charbonnier.toml"
    proc = imtrans(env, "validate", str(recipe))
    assert proc.returncode == 1 and "unknown loss 'charbonnier'" in proc.stderr


def test_the_plugin_own_tests_pass(installed: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(PLUGIN / "tests")], capture_output=True, text=True,
                          env=installed, cwd=PLUGIN)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout
