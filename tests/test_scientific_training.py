"""Training on scientific imagery: tiny pix2pix runs on 16-bit paired folders and on a 6-band
float -> 1-band task, the "auto" value range, a CycleGAN on unpaired 16-bit folders; the
checkpoints record each domain's type and range, and the networks see more than 256 levels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT, train_tiny

from imtrans.catalogue.plugins import components
from imtrans.catalogue.recipe_loader import load_recipe
from imtrans.cli import cli
from imtrans.data.image_writing import encode_image
from imtrans.data.native_images import read_native
from imtrans.runs.checkpoints.files import load_checkpoint
from imtrans.trainers.cyclegan import CycleGANTrainer
from imtrans.trainers.pix2pix import Pix2PixTrainer

SIZE = 32
#: The settings of a tiny pix2pix on 32 px pairs (a 5-level U-Net takes 32 px).
PIX2PIX_32 = {"generator__num_downs": 5, "data__load_size": SIZE, "data__crop_size": SIZE,
              "data__batch_size": 2}


def write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(image, path.suffix))


def uint16_pairs(root: Path, count: int = 4) -> None:
    """Noisy (A) and clean (B) uint16 PNGs, values spread over about 4,000 levels."""
    rng = np.random.default_rng(0)
    for i in range(count):
        clean = rng.integers(20000, 24000, (SIZE, SIZE, 1))
        noisy = clean + rng.normal(0, 200, clean.shape)
        write(root / "trainA" / f"{i:02d}.png", noisy.clip(0, 65535).astype(np.uint16))
        write(root / "trainB" / f"{i:02d}.png", clean.astype(np.uint16))


def last_values(run: Path) -> dict[str, Any]:
    (checkpoint,) = sorted((run / "checkpoints").glob("*.safetensors"))[-1:]
    values: dict[str, Any] = load_checkpoint(checkpoint).manifest["values"]
    return values


def logged_losses(run: Path) -> list[dict[str, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["losses"] for line in lines if '"losses"' in line]


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, torch.Tensor]]]:
    """The batches the trainers' steps are given."""
    batches: list[dict[str, torch.Tensor]] = []
    for trainer in (Pix2PixTrainer, CycleGANTrainer):
        original = trainer.training_step

        def recording(self: Any, batch: dict[str, torch.Tensor], original: Any = original
                      ) -> dict[str, torch.Tensor]:
            batches.append({k: v.detach().clone() for k, v in batch.items()})
            return original(self, batch)

        monkeypatch.setattr(trainer, "training_step", recording)
    yield batches


def test_pix2pix_on_16_bit_paired_folders_records_uint16_and_its_range(
        tmp_path: Path, seen: list[dict[str, torch.Tensor]]) -> None:
    uint16_pairs(tmp_path / "data")
    run = train_tiny(tmp_path, "pix2pix_ct_denoise", steps=3, data__root=str(tmp_path / "data"),
                     data__value_range=[16384, 28672], **PIX2PIX_32)
    assert last_values(run) == {
        "A": {"range": [16384.0, 28672.0], "dtype": "uint16", "channels": 1},
        "B": {"range": [16384.0, 28672.0], "dtype": "uint16", "channels": 1}}
    losses = logged_losses(run)
    assert len(losses) == 3 and all(np.isfinite(v) for step in losses for v in step.values())
    assert len(seen) == 3
    for batch in seen:
        assert batch["A"].shape == (2, 1, SIZE, SIZE)
        # 4,000 levels of 16-bit data, not the 256 of the 8-bit reduction: every level of
        # the clean image is a distinct float.
        assert len(torch.unique(batch["B"])) > 256
        # 20000..23999 in [16384, 28672] (cropped, not resized: no value leaves the files').
        low, high = ((v - 16384) / 6144 - 1 for v in (20000, 23999))
        assert low - 1e-6 <= batch["B"].min() and batch["B"].max() <= high + 1e-6


def test_a_6_band_float_to_1_band_task_trains_with_finite_losses(
        tmp_path: Path, seen: list[dict[str, torch.Tensor]]) -> None:
    rng = np.random.default_rng(1)
    for i in range(3):
        bands = rng.uniform(0, 1, (SIZE, SIZE, 6)).astype(np.float32)
        write(tmp_path / "data" / "trainA" / f"{i}.tif", bands)
        write(tmp_path / "data" / "trainB" / f"{i}.tif", bands.mean(axis=2, keepdims=True))
    run = train_tiny(tmp_path, "pix2pix_ct_denoise", steps=3, data__root=str(tmp_path / "data"),
                     data__value_range="dtype", data__in_channels=6, data__out_channels=1,
                     **PIX2PIX_32)
    assert last_values(run) == {
        "A": {"range": [0.0, 1.0], "dtype": "float32", "channels": 6},
        "B": {"range": [0.0, 1.0], "dtype": "float32", "channels": 1}}
    losses = logged_losses(run)
    assert len(losses) == 3 and all(np.isfinite(v) for step in losses for v in step.values())
    assert [tuple(b["A"].shape[1:]) for b in seen] == [(6, SIZE, SIZE)] * 3
    assert [tuple(b["B"].shape[1:]) for b in seen] == [(1, SIZE, SIZE)] * 3


def test_auto_records_the_percentile_range_of_the_training_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMTRANS_CACHE_DIR", str(tmp_path / "cache"))
    uint16_pairs(tmp_path / "data")
    run = train_tiny(tmp_path, "pix2pix_ct_denoise", steps=1, data__root=str(tmp_path / "data"),
                     data__value_range="auto", **PIX2PIX_32)
    values = last_values(run)
    for key in "AB":
        files = sorted((tmp_path / "data" / f"train{key}").glob("*.png"))
        pixels = np.concatenate([read_native(p, 1).ravel() for p in files]).astype(np.float64)
        low, high = np.percentile(pixels, (0.5, 99.5))
        assert values[key]["dtype"] == "uint16"
        assert values[key]["range"] == [pytest.approx(low), pytest.approx(high)]
    assert values["A"]["range"] != values["B"]["range"]  # the noise widens A's range


def test_cyclegan_trains_on_unpaired_16_bit_folders(
        tmp_path: Path, seen: list[dict[str, torch.Tensor]]) -> None:
    rng = np.random.default_rng(2)
    for i in range(3):
        write(tmp_path / "data" / "trainA" / f"a{i}.tif",
              rng.integers(0, 4096, (40, 40, 1)).astype(np.uint16))
    for i in range(5):
        write(tmp_path / "data" / "trainB" / f"b{i}.png",
              rng.integers(30000, 65536, (40, 40, 1)).astype(np.uint16))
    run = train_tiny(tmp_path, "cyclegan_photo2monet", steps=2,
                     data__root=str(tmp_path / "data"), data__direction="AtoB",
                     data__in_channels=1, data__out_channels=1, data__value_range=[0, 65535])
    assert last_values(run) == {
        "A": {"range": [0.0, 65535.0], "dtype": "uint16", "channels": 1},
        "B": {"range": [0.0, 65535.0], "dtype": "uint16", "channels": 1}}
    losses = logged_losses(run)
    assert len(losses) == 2 and all(np.isfinite(v) for step in losses for v in step.values())
    assert len(seen) == 2
    for batch in seen:
        # A's 12-bit values lie in the low 1/16 of the range, B's in the upper half.
        # (bicubic resizing overshoots a little).
        assert batch["A"].max() < -0.75 and batch["B"].min() > -0.25
        assert len(torch.unique(batch["A"])) > 256


def test_the_ct_recipe_validates_with_a_discriminator_on_both_bands() -> None:
    result = CliRunner().invoke(cli, ["validate", str(ROOT / "recipes/pix2pix_ct_denoise.toml")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "pix2pix_ct_denoise.toml is valid" in result.output
    # pix2pix's D sees the 1-band input beside the 1-band output: 2 channels.
    table = load_recipe(ROOT / "recipes/pix2pix_ct_denoise.toml").discriminator
    disc = components().discriminators.create("patchgan", **{**table.kwargs, "in_channels": 2})
    count = sum(p.numel() for p in disc.parameters())
    disc_line = next(line for line in result.output.splitlines() if line.startswith("disc "))
    assert f"{count:,}" in disc_line
