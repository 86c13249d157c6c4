"""Bad data: every kind of broken, odd or hostile image file, through every dataset.

Each file is made on the fly. Each case ends in one exact outcome: the decoded values, or a
skip (a SkippedImageWarning naming the file, the file in ``skipped_paths``, the next file used),
or under ``strict=True`` a DataError naming the file. Every case also runs through a DataLoader
with two worker processes, where a crash would be re-raised in the test.
"""

from __future__ import annotations

import io
import os
import resource
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from imtrans.catalogue.plugins import load_components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.data import (
    AlignedDataset,
    SingleDataset,
    SkippedImageWarning,
    UnalignedDataset,
    find_images,
    read_image,
)
from imtrans.errors import DataError

# --- making files ----------------------------------------------------------------------------


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def jpeg_bytes(array: np.ndarray, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width x height`` RGB pixels, followed by almost no data:
    a decoder that trusted the header would allocate ``3 * width * height`` bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


#: Files no dataset can use, by file name: how to make them and what the skip message says.
UNUSABLE: dict[str, tuple[Callable[[], bytes], str]] = {
    "truncated.jpg": (lambda: (data := jpeg_bytes(noise(32, 64)))[: len(data) // 2],
                      "truncated"),
    "zero_bytes.jpg": (lambda: b"", "cannot identify image file"),
    "text.jpg": (lambda: b"these are not the pixels you are looking for\n",
                 "cannot identify image file"),
    "bomb.png": (lambda: bomb_png(100_000, 100_000), "exceeds limit"),
}


def write(path: Path, data: bytes | np.ndarray | Image.Image, **options: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        image = Image.fromarray(data) if isinstance(data, np.ndarray) else data
        image.save(path, **options)
    return path


# --- datasets around one bad file ------------------------------------------------------------

DATASETS = ["aligned", "unaligned", "single"]
SMALL = {"load_size": 16, "crop_size": 16}


def dataset_with(kind: str, root: Path, bad_name: str, bad: bytes, **options: Any
                 ) -> tuple[Any, Path, list[Path]]:
    """A dataset whose folder holds ``a.png`` (good), the bad file, ``z.png`` (good), sorted so.

    Returns the dataset, the bad file and the good files of the folder it sits in.
    """
    folder = {"aligned": root / "train", "unaligned": root / "trainA", "single": root}[kind]
    good = [write(folder / "a.png", noise(16, 32, 1)), write(folder / "z.png", noise(16, 32, 2))]
    bad_path = write(folder / f"m_{bad_name}", bad)
    if kind == "aligned":
        return AlignedDataset(root=root, **SMALL, **options), bad_path, good
    if kind == "unaligned":
        write(root / "trainB" / "b.png", noise(16, 16, 3))
        data = UnalignedDataset(root=root, serial=True, **SMALL, **options)
        return data, bad_path, good
    data = SingleDataset(root=root, preprocess="resize_and_crop", **SMALL, **options)
    return data, bad_path, good


class Probe(Dataset[dict[str, Any]]):
    """Runs where the items are made (a worker process): an item's path and shape, and what
    the dataset warned about and had skipped by then."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            item = self.data[index]
        return {
            "path": item["A_path"],
            "shape": list(item["A"].shape),
            "warned": [str(w.message) for w in caught if w.category is SkippedImageWarning],
            "skipped": [str(p) for p in self.data.skipped_paths],
        }


def through_workers(data: Any) -> list[dict[str, Any]]:
    """Every item of ``data`` made by two DataLoader worker processes (a crash re-raises)."""
    iterator = iter(DataLoader(Probe(data), batch_size=None, num_workers=2))
    try:
        return list(iterator)
    except Exception as exc:
        # The error's traceback holds the iterator, whose workers torch then stops only when
        # the error is collected, waiting 5 s for each. Stop them now, without the wait.
        exc.__traceback__ = None
        with mock.patch.object(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.1):
            del iterator
        raise


@pytest.mark.parametrize("kind", DATASETS)
@pytest.mark.parametrize("bad_name", sorted(UNUSABLE))
def test_unusable_file_is_skipped_with_a_warning_and_counted(tmp_path: Path, kind: str,
                                                             bad_name: str) -> None:
    make, reason = UNUSABLE[bad_name]
    data, bad, good = dataset_with(kind, tmp_path, bad_name, make())
    assert len(data) == 3 and data.skipped == 0  # listing decodes nothing
    with pytest.warns(SkippedImageWarning) as caught:
        item = data[1]
    assert item["A_path"] == str(good[1])  # the next usable file stands in
    assert item["A"].shape == (3, 16, 16)
    (message,) = [str(w.message) for w in caught if w.category is SkippedImageWarning]
    assert str(bad) in message and reason in message
    assert data.skipped == 1 and data.skipped_paths == [bad]
    assert [data[i]["A_path"] for i in (0, 2)] == [str(good[0]), str(good[1])]
    assert data.skipped == 1  # a known bad file is not tried again


@pytest.mark.parametrize("kind", DATASETS)
@pytest.mark.parametrize("bad_name", sorted(UNUSABLE))
def test_unusable_file_in_dataloader_workers(tmp_path: Path, kind: str, bad_name: str) -> None:
    make, reason = UNUSABLE[bad_name]
    data, bad, good = dataset_with(kind, tmp_path, bad_name, make())
    items = through_workers(data)
    assert [item["path"] for item in items] == [str(good[0]), str(good[1]), str(good[1])]
    assert [item["shape"] for item in items] == [[3, 16, 16]] * 3
    warned = [message for item in items for message in item["warned"]]
    assert len(warned) == 1 and str(bad) in warned[0] and reason in warned[0]
    # Each worker counts its own skips; together they skipped the bad file once.
    assert sorted({p for item in items for p in item["skipped"]}) == [str(bad)]


@pytest.mark.parametrize("kind", DATASETS)
@pytest.mark.parametrize("bad_name", sorted(UNUSABLE))
def test_strict_raises_a_data_error_naming_the_file(tmp_path: Path, kind: str,
                                                    bad_name: str) -> None:
    make, reason = UNUSABLE[bad_name]
    data, bad, _ = dataset_with(kind, tmp_path, bad_name, make(), strict=True)
    assert data[0]["A"].shape == (3, 16, 16)
    with pytest.raises(DataError, match=reason) as direct:
        data[1]
    assert str(bad) in str(direct.value)
    with pytest.raises(DataError) as from_worker:
        through_workers(data)
    # The worker's error arrives as the same one-line message, its traceback only as a note.
    assert str(from_worker.value) == str(direct.value)
    assert "Traceback" not in str(from_worker.value)
    assert any("DataLoader worker" in note for note in from_worker.value.__notes__)


def test_strict_is_reachable_from_a_recipe(tmp_path: Path) -> None:
    make, _ = UNUSABLE["truncated.jpg"]
    write(tmp_path / "train" / "a.png", noise(16, 32))
    bad = write(tmp_path / "train" / "b.jpg", make())
    registry = load_components(autoload=False)
    for strict in (False, True):
        recipe = recipe_from_dict({"trainer": {"name": "pix2pix"}, "data": {
            "root": str(tmp_path), "strict": strict, **SMALL}}, registry=registry)
        data = registry.datasets.create(recipe.data.name, **recipe.data.kwargs)
        if strict:
            with pytest.raises(DataError, match=r"b\.jpg"):
                data[1]
        else:
            with pytest.warns(SkippedImageWarning, match=r"b\.jpg"):
                assert data[1]["A_path"] == str(tmp_path / "train" / "a.png")
            assert data.skipped_paths == [bad]


def test_a_folder_of_only_unusable_files(tmp_path: Path) -> None:
    for name, (make, _) in UNUSABLE.items():
        write(tmp_path / name, make())
    data = SingleDataset(root=tmp_path)
    # The error gives one reason: the skip warnings may have gone to a worker's stderr.
    with pytest.warns(SkippedImageWarning), pytest.raises(
            DataError, match=r"none of the 4 image files under .* could be used \(the last: "
                             r"cannot read image .*zero_bytes\.jpg: cannot identify image file"):
        data[0]
    assert data.skipped == 4
    with pytest.raises(DataError, match="none of the 4 image files") as info:
        through_workers(SingleDataset(root=tmp_path))
    assert "Traceback" not in str(info.value)
    small = tmp_path / "small"
    write(small / "s.png", noise(8, 8))
    with pytest.warns(SkippedImageWarning), pytest.raises(
            DataError, match=r"could be used \(the last: cannot use image .*s\.png: an image of "
                             r"8x8 \(after resizing\) is smaller than crop_size 16"):
        SingleDataset(root=small, preprocess="crop", crop_size=16)[0]


# --- random damage --------------------------------------------------------------------------


def _encoded(fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    options = {"exif": exif} if fmt in ("JPEG", "PNG", "WEBP") else {}
    Image.fromarray(noise(12, 10)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


ENCODED = {fmt: _encoded(fmt) for fmt in ("JPEG", "PNG", "TIFF", "WEBP", "BMP")}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(sorted(ENCODED)), data=st.data())
def test_randomly_damaged_files_decode_or_raise_a_data_error(tmp_path: Path, fmt: str,
                                                             data: st.DataObject) -> None:
    damaged = bytearray(ENCODED[fmt])
    for _ in range(data.draw(st.integers(1, 6), label="changes")):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)), label="length")
    path = tmp_path / f"damaged.{fmt.lower()}"
    path.write_bytes(bytes(damaged[:cut]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own warnings about corrupt EXIF data
        try:
            image = read_image(path, 3)
        except DataError as exc:
            assert str(path) in str(exc)
        else:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


# --- decompression bombs ---------------------------------------------------------------------


def test_a_declared_huge_image_is_refused_without_allocating(tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.png", bomb_png(100_000, 100_000))
    assert path.stat().st_size < 200
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match=r"bomb\.png.*10000000000 pixels.*exceeds limit"):
        read_image(path, 3)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100 * 1024  # the 30 GB the header declares were never asked for


def test_an_image_just_over_the_pixel_limit_is_refused(tmp_path: Path) -> None:
    # Pillow only warns between 1x and 2x its limit; imtrans refuses those too.
    side = int(Image.MAX_IMAGE_PIXELS**0.5) + 100
    path = write(tmp_path / "big.png", bomb_png(side, side))
    with pytest.raises(DataError, match=r"big\.png.*exceeds limit"):
        read_image(path, 3)


# --- odd images that decode ------------------------------------------------------------------


def test_one_by_one_images(tmp_path: Path) -> None:
    write(tmp_path / "single" / "dot.png", Image.new("RGB", (1, 1), (255, 0, 0)))
    single = SingleDataset(root=tmp_path / "single")  # size rounded up to a multiple of 4
    item = single[0]
    assert item["A"].shape == (3, 4, 4)
    assert torch.equal(item["A"], torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 4, 4))
    resized = SingleDataset(root=tmp_path / "single", preprocess="resize_and_crop", **SMALL)
    assert resized[0]["A"].shape == (3, 16, 16)
    with pytest.raises(DataError, match="smaller than crop_size"):
        SingleDataset(root=tmp_path / "single", preprocess="crop", crop_size=4, strict=True)[0]
    # An aligned file 1 pixel wide cannot hold two halves; 2 pixels wide gives two 1x1 images.
    write(tmp_path / "aligned" / "train" / "narrow.png", Image.new("RGB", (1, 1)))
    with pytest.raises(DataError, match=r"narrow\.png.*1x1 is too narrow"):
        AlignedDataset(root=tmp_path / "aligned", strict=True, **SMALL)[0]
    pair = np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)
    write(tmp_path / "aligned" / "train" / "narrow.png", pair)
    item = AlignedDataset(root=tmp_path / "aligned", preprocess="none", strict=True)[0]
    assert item["A"].shape == item["B"].shape == (3, 4, 4)
    assert item["A"][:, 0, 0].tolist() == [1.0, -1.0, -1.0]
    assert item["B"][:, 0, 0].tolist() == [-1.0, -1.0, 1.0]


def test_cmyk_jpeg_reads_as_rgb(tmp_path: Path) -> None:
    path = write(tmp_path / "cmyk.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)))  # red
    with Image.open(path) as opened:
        assert opened.mode == "CMYK"
    rgb = read_image(path, 3)
    assert rgb.shape == (8, 8, 3)
    assert np.abs(rgb.astype(int) - [255, 0, 0]).max() <= 3


def test_palette_png_with_and_without_transparency(tmp_path: Path) -> None:
    indexed = Image.new("P", (4, 4), 1)
    indexed.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    plain = write(tmp_path / "plain.png", indexed)
    clear = write(tmp_path / "clear.png", indexed, transparency=1)
    assert read_image(plain, 3)[0, 0].tolist() == [200, 100, 50]
    assert read_image(plain, 4)[0, 0].tolist() == [200, 100, 50, 255]
    assert read_image(clear, 3)[0, 0].tolist() == [200, 100, 50]  # alpha dropped, not blended
    assert read_image(clear, 4)[0, 0].tolist() == [200, 100, 50, 0]
    assert read_image(clear, 1)[0, 0].tolist() == [round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)]


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 100, 65535, 300]], np.uint16)
    path = write(tmp_path / "deep.png", values)
    with Image.open(path) as opened:
        assert opened.mode == "I;16"
    assert read_image(path, 1)[0, :, 0].tolist() == [0, 100, 255, 1]
    assert read_image(path, 3)[0, 2].tolist() == [255, 255, 255]


@pytest.mark.parametrize(("orientation", "turns"), [(6, -1), (8, 1), (3, 2), (1, 0)])
@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_exif_orientation_turns_the_pixels_upright(tmp_path: Path, orientation: int, turns: int,
                                                   suffix: str) -> None:
    stored = np.zeros((16, 24, 3), np.uint8)
    stored[:8, :8] = (255, 0, 0)  # red top-left corner
    stored[-8:, -8:] = (0, 0, 255)  # blue bottom-right corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    # JPEG without chroma subsampling, at top quality: off by at most 1 or 2 levels.
    options = {"exif": exif, **({"quality": 100, "subsampling": 0} if suffix == "jpg" else {})}
    path = write(tmp_path / f"turned.{suffix}", stored, **options)
    upright = np.rot90(stored, k=turns)  # what a viewer displays (k < 0: clockwise)
    got = read_image(path, 3)
    assert got.shape == upright.shape
    assert np.abs(got.astype(int) - upright).max() <= (0 if suffix == "png" else 2)
    through = SingleDataset(root=tmp_path, strict=True)[0]["A"]  # preprocess none: no resize
    assert through.shape == (3, *upright.shape[:2])


# --- aligned files whose halves do not match -------------------------------------------------


def test_odd_width_halves_are_equal_and_the_last_column_dropped(tmp_path: Path) -> None:
    red = np.broadcast_to(np.array([255, 0, 0], np.uint8), (12, 12, 3))
    blue = np.broadcast_to(np.array([0, 0, 255], np.uint8), (12, 12, 3))
    green = np.broadcast_to(np.array([0, 255, 0], np.uint8), (12, 1, 3))
    write(tmp_path / "train" / "odd.png", np.concatenate([red, blue, green], axis=1))  # 25 wide
    data = AlignedDataset(root=tmp_path, preprocess="none", flip=False, strict=True)
    item = data[0]
    # Two 12-pixel halves; the green column is in neither.
    assert item["A"].shape == item["B"].shape == (3, 12, 12)
    assert torch.equal(item["A"], torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 12, 12))
    assert torch.equal(item["B"], torch.tensor([-1.0, -1.0, 1.0])[:, None, None].expand(3, 12, 12))


def test_aligned_files_of_different_sizes_batch_together(tmp_path: Path) -> None:
    write(tmp_path / "train" / "a.png", noise(20, 40))
    write(tmp_path / "train" / "b.png", noise(33, 71))  # odd width, another aspect ratio
    write(tmp_path / "train" / "c.jpg", noise(64, 32))  # halves taller than wide
    data = AlignedDataset(root=tmp_path, strict=True, **SMALL)
    loader = DataLoader(data, batch_size=3, num_workers=2)
    (batch,) = list(loader)
    assert batch["A"].shape == batch["B"].shape == (3, 3, 16, 16)


# --- folders ---------------------------------------------------------------------------------


def test_empty_split_folders_are_refused_naming_the_layout(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=r"train holds no images.*A and B side by side"):
        AlignedDataset(root=tmp_path)
    (tmp_path / "trainA").mkdir()
    write(tmp_path / "trainB" / "b.png", noise(8, 8))
    with pytest.raises(DataError, match=r"trainA holds no images.*trainA/ and trainB/"):
        UnalignedDataset(root=tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "readme.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"photos holds no images; accepted extensions: .*\.png"):
        SingleDataset(root=tmp_path / "photos")


def test_symlink_loops_terminate_without_duplicates(tmp_path: Path) -> None:
    train = tmp_path / "train"
    write(train / "a.png", noise(16, 32, 1))
    write(train / "sub" / "b.png", noise(16, 32, 2))
    os.symlink(train, train / "loop")  # train/loop/loop/loop/... if followed
    os.symlink(train, train / "sub" / "up")
    os.symlink(train / "x.png", train / "y.png")  # two file links that point at each other
    os.symlink(train / "y.png", train / "x.png")
    found = find_images(train)
    assert [p.relative_to(train).as_posix() for p in found] == ["a.png", "sub/b.png", "x.png",
                                                                "y.png"]
    data = AlignedDataset(root=tmp_path, **SMALL)
    items = through_workers(data)
    good = [str(train / "a.png"), str(train / "sub" / "b.png")]
    assert [item["path"] for item in items] == [good[0], good[1], good[0], good[0]]
    skipped = sorted({p for item in items for p in item["skipped"]})
    assert skipped == [str(train / "x.png"), str(train / "y.png")]
    warned = " ".join(message for item in items for message in item["warned"])
    assert "Too many levels of symbolic links" in warned or "ELOOP" in warned


@pytest.mark.parametrize("cache", ["off", "device"])
def test_training_ends_with_a_count_of_the_skipped_files(tmp_path: Path, cache: str) -> None:
    import subprocess
    import sys

    folder = tmp_path / "pairs" / "train"
    for i in range(4):
        write(folder / f"{i}.png", noise(40, 80, seed=i))
    bad = write(folder / "2b.png", b"not an image at all")
    root = Path(__file__).resolve().parents[1]
    sets = [f"data.root={tmp_path / 'pairs'}", "data.load_size=36", "data.crop_size=32",
            "generator.name=unet", "generator.num_downs=5", "generator.ngf=4",
            "discriminator.ndf=4", "run.device=cpu", "data.num_workers=2", "data.batch_size=1",
            "train.max_steps=6", f"run.output_dir={tmp_path / 'runs'}", f"data.cache={cache}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env |= {"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "imtrans", "run",
                           str(root / "recipes" / "pix2pix_edges2shoes.toml"),
                           *[a for s in sets for a in ("--set", s)]],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "warning: skipped 1 unusable image files" in proc.stderr
    assert str(bad) in " ".join(proc.stderr.split())  # the console may wrap the path
