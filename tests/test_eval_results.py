"""`imtrans eval` result files: later metrics merge into the same protocol's file, another
protocol writes beside it, nothing is lost, and scores on few images carry warnings."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from conftest import ROOT, TINY_RUN

from imtrans.cli import cli
from imtrans.evaluation.caveats import MIN_IMAGES, small_sample_warnings, warned_metrics
from imtrans.evaluation.results import save_result
from imtrans.report.numbers import format_score

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "fid_inception_tf2015.pt"
#: The pix2pix run's checkpoint on the bundled edges2shoes sample, whose val split has 5 pairs.
BASE = "step_00000004_val_AtoB"


@pytest.fixture
def run(pix2pix_run: Path, tmp_path: Path) -> Path:
    """A private copy of the session's pix2pix run, without the results other tests wrote."""
    copy = tmp_path / pix2pix_run.name
    shutil.copytree(pix2pix_run, copy, ignore=shutil.ignore_patterns("eval", "export"))
    return copy


def _eval(run: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["eval", str(run), "--device", "cpu", *args])
    assert result.exit_code == 0, result.output
    return result


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "eval").iterdir())


def test_other_metrics_merge_into_the_result_of_the_same_protocol(run: Path) -> None:
    _eval(run, "--metrics", "psnr")
    first = _read(run / "eval" / f"{BASE}.json")
    second = _eval(run, "--metrics", "ssim")
    merged = _read(run / "eval" / f"{BASE}.json")
    assert _files(run) == [f"{BASE}.json"]
    assert merged["metrics"] == first["metrics"] | {"ssim": merged["metrics"]["ssim"]}
    assert 0 < merged["metrics"]["ssim"] < 1
    assert "keeping its earlier psnr" in second.stderr
    assert str(run / "eval" / f"{BASE}.json") in second.stdout  # the file the table is from
    # Recomputing a metric replaces it (here by the same value: the protocol is seeded).
    _eval(run, "--metrics", "psnr")
    assert _read(run / "eval" / f"{BASE}.json")["metrics"] == merged["metrics"]


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"{WEIGHTS} not present")
def test_fid_is_kept_when_psnr_is_computed_later(run: Path) -> None:
    _eval(run, "--metrics", "fid,kid", "--inception", str(WEIGHTS))
    first = _read(run / "eval" / f"{BASE}.json")
    assert set(first["metrics"]) == {"fid", "kid", "kid_std"}
    later = _eval(run, "--metrics", "psnr")
    saved = _read(run / "eval" / f"{BASE}.json")
    assert _files(run) == [f"{BASE}.json"]
    assert {k: saved["metrics"][k] for k in first["metrics"]} == first["metrics"]
    assert "psnr" in saved["metrics"]
    assert saved["protocol"]["inception"] == first["protocol"]["inception"]  # kept with FID
    assert "psnr_ssim" in saved["protocol"]
    # The merged file warns about every score it holds: 5 images are too few for each.
    assert [w.split()[0] for w in saved["warnings"]] == ["FID", "KID", "PSNR"]
    assert "FID on 5 images is strongly biased upward" in saved["warnings"][0]
    fid_cell = f"{format_score(saved['metrics']['fid'])} (!)"  # as the report writes it
    assert fid_cell in later.stdout and "(!) AtoB: FID on 5 images" in later.stderr


def test_another_protocol_writes_beside_and_changes_nothing(run: Path, tmp_path: Path) -> None:
    _eval(run, "--metrics", "psnr")
    original = run / "eval" / f"{BASE}.json"
    before = original.read_bytes()
    data = tmp_path / "data"
    shutil.copytree(_read(original)["protocol"]["data_root"], data)
    for protocol in (["--max-images", "3"], ["--mode", "eval"], ["--seed", "1"],
                     ["--data", str(data)]):
        result = _eval(run, "--metrics", "psnr,ssim", *protocol)
        written = re.findall(rf"\S*{BASE}-[0-9a-f]{{8}}\.json", result.stdout)
        assert len(written) == 1, result.stdout
        assert set(_read(Path(written[0]))["metrics"]) == {"psnr", "ssim"}
    names = _files(run)
    assert len(names) == 5 and all(re.fullmatch(rf"{BASE}(-[0-9a-f]{{8}})?\.json", n)
                                   for n in names), names
    assert original.read_bytes() == before
    protocols = [_read(run / "eval" / n)["protocol"] for n in names]
    assert {(p["images"]["generated"], p["generation"]["mode"], p["generation"]["seed"])
            for p in protocols} == {(5, "paper", 0), (3, "paper", 0), (5, "eval", 0),
                                    (5, "paper", 1)}
    # The same other protocol again merges into its own file, not into a new one.
    _eval(run, "--metrics", "psnr", "--max-images", "3")
    assert _files(run) == names


def test_files_it_cannot_merge_with_are_never_overwritten(run: Path) -> None:
    folder = run / "eval"
    folder.mkdir()
    legacy = folder / f"{BASE}.json"  # written before the protocol recorded mode and seed
    legacy.write_text(json.dumps({
        "checkpoint": "step_00000004.safetensors", "step": 4, "epoch": 0, "split": "val",
        "direction": "AtoB", "metrics": {"fid": 321.0},
        "protocol": {"images": {"generated": 5, "real": 5}}}))
    kept = legacy.read_bytes()
    _eval(run, "--metrics", "psnr")
    (beside,) = [n for n in _files(run) if n != legacy.name]
    assert legacy.read_bytes() == kept and beside.startswith(f"{BASE}-")
    # A result of the same images scored another way goes to the next number, past an
    # unreadable file, which is left as it is.
    record = _read(folder / beside)
    record["protocol"]["psnr_ssim"] = "another PSNR"
    (folder / f"{beside[:-5]}-2.json").write_text("{not json")
    saved = save_result(record, folder, "step_00000004")
    assert not saved.merged and saved.path.name == f"{beside[:-5]}-3.json"
    assert (folder / f"{beside[:-5]}-2.json").read_text() == "{not json"


def test_warnings_only_below_the_minimum() -> None:
    assert small_sample_warnings(["fid", "kid", "psnr", "ssim"], MIN_IMAGES, MIN_IMAGES) == []
    few = small_sample_warnings(["fid", "kid"], 100, 20)  # FID needs both sets large
    assert few[0].startswith("FID on 100 generated and 20 real images")
    assert "subsets of 20 images" in few[1]
    assert small_sample_warnings(["psnr", "ssim"], 100, 20) == []  # per-image: generated count
    assert warned_metrics(["fid", "kid", "kid_std", "ssim"], 5, 5) == {"fid", "kid", "kid_std",
                                                                       "ssim"}


def test_training_evaluation_says_when_its_subset_is_small() -> None:
    from imtrans.catalogue.plugins import components
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.evaluation.periodic import PeriodicEvaluation

    def evaluation(max_images: int) -> PeriodicEvaluation:
        # A U-Net that takes 64 px crops (unet_256 does not: the recipe would be refused).
        settings = TINY_RUN | {"data.load_size": 72, "data.crop_size": 64,
                               "generator.name": "unet", "generator.num_downs": 6,
                               "eval.every_epochs": 1, "eval.metric": "psnr",
                               "eval.max_images": max_images}
        sets = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in settings.items()]
        recipe = load_recipe(ROOT / "recipes" / "pix2pix_edges2shoes.toml", sets)
        return PeriodicEvaluation(recipe, components(), torch.device("cpu"))

    text = evaluation(50).small_subset_warning  # the sample's val split holds 5 pairs
    assert text is not None and text.startswith("evaluation during training scores 5 val "
                                                "images (all the val split holds")
    assert "PSNR and SSIM averaged over 5 images" in text
    assert "[eval] max_images = 3)" in (evaluation(3).small_subset_warning or "")


def test_the_eval_console_table_writes_scores_as_the_report_does() -> None:
    from imtrans.cli.eval import _format

    metrics = {"fid": 437.42, "kid": 0.3008, "kid_std": 3.142e-16, "ssim": 0.26301}
    assert [_format(metrics, m) for m in ("fid", "kid", "psnr", "ssim")] == [
        "437.4", "0.3008 ± <0.0001", "", "0.2630"]  # KID was '300.80e-3', its spread a column
