"""The bundled ct_denoise sample: paired int16 CT tiles in HU, the noise it states, and that
``python -m imtrans.samples.make_ct_denoise`` makes exactly the shipped files."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from imtrans.samples import make_ct_denoise

ROOT = Path(make_ct_denoise.__file__).resolve().parent / "ct_denoise"
SIDES = ("trainA", "trainB", "testA", "testB")


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _stack(folder: Path) -> np.ndarray:
    return np.stack([tifffile.imread(folder / name) for name in _names(folder)])


def _stated_count(split: str) -> int:
    """The pair count SOURCE.md states for a split (a line like ``- trainA / trainB: 66 pairs``)."""
    text = (ROOT / "SOURCE.md").read_text(encoding="utf-8")
    match = re.search(rf"^- {split}A / {split}B: (\d+) pairs$", text, re.MULTILINE)
    assert match, f"SOURCE.md states no count for {split}"
    return int(match.group(1))


def test_layout_pairs_files_by_name_and_counts_match_source_md() -> None:
    assert sorted(p.name for p in ROOT.iterdir() if p.is_dir()) == sorted(SIDES)
    for split in ("train", "test"):
        noisy, clean = _names(ROOT / f"{split}A"), _names(ROOT / f"{split}B")
        assert noisy == clean
        assert len(noisy) == _stated_count(split)
        assert all(name.endswith(".tif") for name in noisy)
    # The test tiles come from another image than the train tiles.
    assert {n.split("_")[0] for n in _names(ROOT / "trainA")} == {"head"}
    assert {n.split("_")[0] for n in _names(ROOT / "testA")} == {"ctsmall"}


@pytest.mark.parametrize("side", SIDES)
def test_every_file_is_a_single_channel_int16_tile_in_hu(side: str) -> None:
    for path in sorted((ROOT / side).iterdir()):
        with tifffile.TiffFile(path) as tif:
            assert len(tif.pages) == 1
            page = tif.pages[0]
            assert page.samplesperpixel == 1
            tile = page.asarray()
        assert tile.dtype == np.int16 and tile.shape == (64, 64), path.name
        assert tile.min() >= -1024 and tile.max() <= 3071, path.name
    # Real 16-bit content: far more levels than an 8-bit image has.
    assert len(np.unique(_stack(ROOT / side))) > 256


@pytest.mark.parametrize("split", ["train", "test"])
def test_noise_is_the_stated_hounsfield_std_with_zero_mean(split: str) -> None:
    noise = _stack(ROOT / f"{split}A").astype(np.float64) - _stack(ROOT / f"{split}B")
    # Clipping at -1024 HU takes away part of the noise in air (its negative half), hence the
    # tolerances: the std a little low, the mean a little above 0 (5.7 HU of 100 on train).
    assert noise.std() == pytest.approx(make_ct_denoise.NOISE_STD_HU, rel=0.15)
    assert abs(noise.mean()) < 0.08 * make_ct_denoise.NOISE_STD_HU
    # Spatially correlated: horizontal neighbours' noise is positively correlated (white
    # noise would give about 0; the sigma 0.7 px Gaussian gives about 0.6).
    correlation = np.corrcoef(noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel())[0, 1]
    assert 0.4 < correlation < 0.8


def test_correlated_noise_has_the_stated_std() -> None:
    noise = make_ct_denoise.correlated_noise(np.random.default_rng(1), (256, 256))
    assert noise.shape == (256, 256)
    assert noise.std() == pytest.approx(make_ct_denoise.NOISE_STD_HU, rel=0.05)


def test_regenerating_gives_the_shipped_arrays(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    counts = make_ct_denoise.build_sample(tmp_path)
    assert counts == {"train": _stated_count("train"), "test": _stated_count("test")}
    for side in SIDES:
        assert _names(tmp_path / side) == _names(ROOT / side)
        for name in _names(ROOT / side):
            made = tifffile.imread(tmp_path / side / name)
            shipped = tifffile.imread(ROOT / side / name)
            assert made.dtype == shipped.dtype and np.array_equal(made, shipped), f"{side}/{name}"


def test_without_pydicom_it_says_so_in_one_line_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pydicom", None)  # makes "import pydicom" fail
    assert make_ct_denoise.main(["--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "make_ct_denoise needs pydicom: pip install 'imtrans[dicom]'"
    assert not (tmp_path / "out").exists()


def test_an_out_path_that_is_a_file_is_refused_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pydicom")
    target = tmp_path / "taken"
    target.write_text("keep me", encoding="utf-8")
    assert make_ct_denoise.main(["--out", str(target)]) == 1
    assert capsys.readouterr().err.strip() == f"--out {target} is a file, expected a folder"
    assert target.read_text(encoding="utf-8") == "keep me"
