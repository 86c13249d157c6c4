"""The command line: listing, validation, and errors as messages with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import imtrans
from imtrans.cli import cli

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("builtins_only")  # whatever plugins are installed too


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_version() -> None:
    code, out = run("--version")
    assert code == 0 and out.strip() == f"imtrans, version {imtrans.__version__}"


def test_list_shows_every_builtin_component_with_its_source() -> None:
    code, out = run("list")
    assert code == 0
    for name in ["resnet_9blocks", "resnet_6blocks", "unet_256", "unet_128", "patchgan", "pixel",
                 "gan", "lsgan", "hinge", "wgangp", "l1", "cycle", "identity", "cyclegan",
                 "pix2pix", "aligned", "unaligned", "single"]:
        assert f" {name} " in out, name
    lines = [line for line in out.splitlines() if " lsgan " in line]
    assert lines[0].split()[:3] == ["loss", "lsgan", "imtrans"]


def test_list_one_kind() -> None:
    code, out = run("list", "losses")
    assert code == 0
    kinds = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    assert kinds == {"loss"}


def test_plugins_lists_the_builtin_plugin_and_what_it_registered() -> None:
    code, out = run("plugins")
    assert code == 0
    assert "imtrans" in out and "generator: resnet, resnet_9blocks" in out


@pytest.mark.parametrize(("recipe", "expected"), [
    ("cyclegan_photo2monet.toml", {"gen_ab": "11,378,179", "gen_ba": "11,378,179",
                                   "disc_a": "2,764,737", "disc_b": "2,764,737"}),
    ("pix2pix_edges2shoes.toml", {"gen": "54,413,955", "disc": "2,768,705"}),
])
def test_validate_shipped_recipes_prints_parameter_counts(recipe: str, expected: dict) -> None:
    code, out = run("validate", str(ROOT / "recipes" / recipe))
    assert code == 0, out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for role, count in expected.items():
        assert rows[role][2] == count, rows[role]
    total = sum(int(c.replace(",", "")) for c in expected.values())
    assert out.strip().endswith(f"{total:,} parameters")


def test_validate_with_set_and_print(tmp_path: Path) -> None:
    code, out = run("validate", str(ROOT / "recipes/cyclegan_photo2monet.toml"),
                    "--set", "generator.name=resnet_6blocks", "--print")
    assert code == 0, out
    assert "7,837,699" in out
    assert 'name = "resnet_6blocks"' in out and "[schedule]" in out


def test_misspelled_component_exits_nonzero_with_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('[trainer]\nname = "cyclegan"\n[data]\nroot = "x"\n'
                    '[generator]\nname = "resnet_9block"\n')
    code, out = run("validate", str(path))
    assert code == 1
    assert "error:" in out and "[generator] name = 'resnet_9block'" in out
    assert "did you mean 'resnet_9blocks'?" in out
    assert "Traceback" not in out


def test_errors_have_no_traceback_unless_debug(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    proc = subprocess.run([sys.executable, "-m", "imtrans", "validate", missing],
                          capture_output=True, text=True,
                          env={"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin"})
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: recipe not found: {missing}"
    debug = subprocess.run([sys.executable, "-m", "imtrans", "--debug", "validate", missing],
                           capture_output=True, text=True,
                           env={"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr
