"""The dataset catalog, the bundled samples, root resolution, combine_aligned and `imtrans data`."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from imtrans.cli.data import data
from imtrans.data.catalog import CATALOG, catalog_names, format_bytes, get_entry
from imtrans.data.folders import AlignedDataset, UnalignedDataset
from imtrans.data.resolve import resolve_root
from imtrans.errors import DataError
from imtrans.preparation.combine import combine_aligned
from imtrans.samples import SAMPLE_NAMES, sample_root

SAMPLES = Path(__file__).resolve().parents[1] / "imtrans" / "samples"


# --- catalog -------------------------------------------------------------------------------

def test_names_are_unique_and_cover_both_papers() -> None:
    names = catalog_names()
    assert len(names) == len(set(names)) == 17
    pix2pix = {"facades", "cityscapes", "maps", "edges2shoes", "edges2handbags", "night2day"}
    assert {e.name for e in CATALOG if e.kind == "aligned"} == pix2pix
    assert {"maps_unaligned", "cityscapes_unaligned", "facades_unaligned"} <= set(names)


@pytest.mark.parametrize("entry", CATALOG, ids=lambda e: e.name)
def test_every_entry_is_well_formed(entry) -> None:
    url = urlparse(entry.url)
    assert url.scheme == "http" and url.netloc == "efrosgans.eecs.berkeley.edu"
    folder = "pix2pix" if entry.kind == "aligned" else "cyclegan"
    stem = entry.name.removesuffix("_unaligned")
    assert url.path == f"/{folder}/datasets/{stem}.{entry.archive}"
    assert entry.archive == ("tar.gz" if entry.kind == "aligned" else "zip")
    assert entry.default_direction in ("AtoB", "BtoA")
    assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
    assert entry.md5 is None or re.fullmatch(r"[0-9a-f]{32}", entry.md5)
    assert entry.size_bytes is None or entry.size_bytes > 1_000_000
    assert entry.has_checksum == (entry.sha256 is not None or entry.md5 is not None)
    assert entry.layout and entry.description and entry.source


def test_get_entry_suggests_close_names_and_lists_all() -> None:
    assert get_entry("horse2zebra").kind == "unaligned"
    with pytest.raises(DataError, match="did you mean 'horse2zebra'") as caught:
        get_entry("hors2zebra")
    assert "known datasets: facades" in str(caught.value)
    with pytest.raises(DataError, match="unknown dataset 'xyz'; known datasets"):
        get_entry("xyz")


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(305231073) == "291 MiB"
    assert format_bytes(1476754427) == "1.4 GiB"


# --- bundled samples -----------------------------------------------------------------------

def test_samples_are_readable_by_the_datasets_and_small() -> None:
    monet = sample_root("monet2photo")
    shoes = sample_root("edges2shoes")
    assert monet is not None and shoes is not None and sample_root("horse2zebra") is None
    assert len(UnalignedDataset(root=monet, split="train", strict=True)) == 20
    test = UnalignedDataset(root=monet, split="test", strict=True, preprocess="none")
    assert test[4]["A"].shape == (3, 256, 256)
    train = AlignedDataset(root=shoes, split="train", strict=True)
    assert len(train) == 20 and train[0]["B"].shape == (3, 256, 256)
    assert len(AlignedDataset(root=shoes, split="val", strict=True)) == 5
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total <= 3_000_000, f"bundled samples hold {total:,} bytes"
    for name in SAMPLE_NAMES:
        source = (SAMPLES / name / "SOURCE.md").read_text()
        assert "Provenance and licence" in source and "Files taken" in source


# --- resolve_root --------------------------------------------------------------------------

def test_resolve_root_uses_an_existing_folder(tmp_path: Path) -> None:
    resolved = resolve_root(tmp_path, "monet2photo")
    assert (resolved.path, resolved.source, resolved.message) == (tmp_path, "given", None)


def test_resolve_root_falls_back_to_the_sample_with_one_message(tmp_path: Path) -> None:
    resolved = resolve_root(tmp_path / "datasets" / "monet2photo", "monet2photo")
    assert resolved.source == "sample" and resolved.path == sample_root("monet2photo")
    assert resolved.message == (
        f"{tmp_path}/datasets/monet2photo not found: training on the bundled sample of "
        f"monet2photo (20 + 20 images); `imtrans data download monet2photo --dir "
        f"{tmp_path}/datasets` fetches the full set (291 MiB) into {tmp_path}/datasets/monet2photo")
    shoes = resolve_root("datasets/edges2shoes", "edges2shoes").message
    assert shoes is not None and "(20 pairs); `imtrans data download edges2shoes` " in shoes


def test_resolve_root_without_sample_says_how_to_get_the_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"datasets/facades does not exist; `imtrans data "
                                        r"download facades` fetches it"):
        resolve_root("datasets/facades", "facades")
    with pytest.raises(DataError, match=f"{tmp_path}/mine does not exist; put the images"):
        resolve_root(tmp_path / "mine", None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        resolve_root(tmp_path / "file", "facades")


# --- combine_aligned -----------------------------------------------------------------------

def _png(path: Path, seed: int, size: tuple[int, int] = (8, 6)) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def test_combine_puts_a_left_and_b_right_per_split(tmp_path: Path) -> None:
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "AB"
    left = {n: _png(a / "train" / f"{n}.png", i) for i, n in enumerate(["1", "2", "sub/3"])}
    right = {n: _png(b / "train" / f"{n}.png", 10 + i) for i, n in enumerate(["1", "2", "sub/3"])}
    _png(a / "val" / "4.png", 20)
    _png(b / "val" / "4.png", 21)
    _png(a / "val" / "lonely.png", 22)
    _png(b / "train" / "orphan.png", 23)
    result = combine_aligned(a, b, out)
    assert (result.written, result.per_split) == (4, {"train": 3, "val": 1})
    assert result.missing_in_b == ("val/lonely.png",)
    assert result.missing_in_a == ("train/orphan.png",)
    for name in left:
        pair = np.asarray(Image.open(out / "train" / f"{name}.png"))
        assert pair.shape == (6, 16, 3)
        assert np.array_equal(pair[:, :8], left[name]) and np.array_equal(pair[:, 8:], right[name])
    assert AlignedDataset(root=out, split="train", strict=True)[0]["A"].shape[0] == 3


def test_combine_flat_folders_resizes_b_or_refuses(tmp_path: Path) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    _png(a / "x.png", 1, (8, 6))
    _png(b / "x.jpg", 2, (4, 3))  # names pair without their extension
    result = combine_aligned(a, b, tmp_path / "out")
    assert (result.written, result.resized, result.per_split) == (1, 1, {"": 1})
    assert Image.open(tmp_path / "out" / "x.png").size == (16, 6)
    with pytest.raises(DataError, match=r"is 8x6 but .* is 4x3"):
        combine_aligned(a, b, tmp_path / "out2", resize_b=False)
    with pytest.raises(DataError, match=r"lies inside the input folder .*A"):
        combine_aligned(a, b, a / "out")
    _png(tmp_path / "C" / "y.png", 3)
    with pytest.raises(DataError, match=r"no image in .*A has a partner .* \(A has x.png\)"):
        combine_aligned(a, tmp_path / "C", tmp_path / "out3")


# --- the data commands ---------------------------------------------------------------------

def test_cli_list_shows_every_entry_with_its_checksum_kind() -> None:
    result = CliRunner().invoke(data, ["list"], catch_exceptions=False)
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[1:]}
    assert set(rows) == set(catalog_names())
    assert rows["horse2zebra"][:2] == ["horse2zebra", "unaligned"]
    assert rows["horse2zebra"][-1] == "sha256" and rows["facades"][-1] == "md5"
    assert "291 MiB" in result.output and "~29 MiB" in result.output


def test_cli_combine_reports_pairs_and_orphans(tmp_path: Path) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    for name in ["1", "2"]:
        _png(a / "train" / f"{name}.png", 1)
        _png(b / "train" / f"{name}.png", 2)
    _png(a / "train" / "3.png", 3)
    result = CliRunner().invoke(data, ["combine", str(a), str(b), str(tmp_path / "AB")],
                                catch_exceptions=False)
    assert result.exit_code == 0
    assert f"wrote 2 pairs to {tmp_path / 'AB'} (train 2)" in result.output
    assert "1 images in" in result.output and "train/3.png" in result.output
