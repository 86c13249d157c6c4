"""Tests for imtrans.data: discovery, decoding, the preprocessing modes and the datasets."""

from __future__ import annotations

import inspect
import os
import pickle
import typing
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imtrans.data import (
    AlignedDataset,
    SingleDataset,
    SkippedImageWarning,
    UnalignedDataset,
    build_transform,
    find_images,
    read_image,
    to_tensor,
)
from imtrans.errors import DataError, InvalidArgumentError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODES = ["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"]
# Expected output (H, W) for a 42 x 46 input with load_size 36, crop_size 32.
MODE_SHAPES = {
    "resize_and_crop": (32, 32),
    "crop": (32, 32),
    "scale_width": (32, 36),  # int(max(36 * 42 / 46, 32)) = 32
    "scale_width_and_crop": (32, 32),
    "none": (40, 48),  # round(10.5) = 10 and round(11.5) = 12, as Python (and the paper code)
}


def pattern(height: int, width: int, seed: int = 0, gray: bool = False) -> np.ndarray:
    """Noise: no crop offset or flip of it looks like another."""
    rng = np.random.default_rng(seed)
    if gray:
        return np.repeat(rng.integers(0, 256, (height, width, 1), dtype=np.uint8), 3, axis=2)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def save_pair(path: Path, left: np.ndarray, right: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)
    return path


def solid(height: int, width: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (height, width, 3)).copy()


@pytest.fixture
def red_blue(tmp_path: Path) -> Path:
    """root/train with three 32 x 32 pairs: A (left) red, B (right) blue."""
    for i in range(3):
        red, blue = solid(32, 32, (255, 0, 0)), solid(32, 32, (0, 0, 255))
        save_pair(tmp_path / "train" / f"{i}.png", red, blue)
    return tmp_path


# --- aligned ---------------------------------------------------------------------------------


def test_aligned_item_shapes_and_range(red_blue: Path) -> None:
    data = AlignedDataset(root=str(red_blue), load_size=36, crop_size=32)
    assert len(data) == 3
    item = data[1]
    assert set(item) == {"A", "B", "A_path", "B_path"}
    assert item["A"].shape == item["B"].shape == (3, 32, 32)
    assert item["A"].dtype == torch.float32
    for key in ("A", "B"):
        assert item[key].min() >= -1.0 and item[key].max() <= 1.0
    assert item["A_path"] == item["B_path"] == str(red_blue / "train" / "1.png")
    with pytest.raises(IndexError):
        data[3]


def test_direction_swaps_halves_and_channels(red_blue: Path) -> None:
    a_to_b = AlignedDataset(root=red_blue, preprocess="none", flip=False)[0]
    assert torch.all(a_to_b["A"][0] == 1) and torch.all(a_to_b["A"][2] == -1)  # red
    assert torch.all(a_to_b["B"][0] == -1) and torch.all(a_to_b["B"][2] == 1)  # blue
    b_to_a = AlignedDataset(
        root=red_blue, direction="BtoA", in_channels=1, out_channels=4, preprocess="none"
    )[0]
    # A is now the blue right half read as luma (0.114 * 255 = 29), B the red left half + alpha.
    assert b_to_a["A"].shape == (1, 32, 32) and b_to_a["B"].shape == (4, 32, 32)
    torch.testing.assert_close(b_to_a["A"], torch.full((1, 32, 32), 29 / 127.5 - 1))
    torch.testing.assert_close(b_to_a["B"][:, 0, 0], torch.tensor([1.0, -1.0, -1.0, 1.0]))


def test_odd_width_drops_last_column(tmp_path: Path) -> None:
    left = solid(20, 12, (255, 0, 0))
    right = np.concatenate([solid(20, 12, (0, 0, 255)), solid(20, 1, (0, 255, 0))], axis=1)
    save_pair(tmp_path / "train" / "odd.png", left, right)  # 25 wide: halves of 12
    item = AlignedDataset(root=tmp_path, preprocess="none", flip=False)[0]
    assert item["A"].shape == item["B"].shape == (3, 20, 12)
    assert torch.all(item["A"][0] == 1)
    assert torch.all(item["B"][2] == 1)  # all blue: the green last column was dropped


@pytest.mark.parametrize("mode", MODES)
def test_paired_transform_is_identical_on_a_and_b(tmp_path: Path, mode: str) -> None:
    picture = pattern(42, 46, gray=True)
    save_pair(tmp_path / "train" / "p.png", picture, picture)
    data = AlignedDataset(
        root=tmp_path, preprocess=mode, load_size=36, crop_size=32, out_channels=1
    )
    for seed in range(12):
        torch.manual_seed(seed)
        item = data[0]
        assert item["A"].shape[1:] == MODE_SHAPES[mode]
        assert item["B"].shape == (1, *MODE_SHAPES[mode])
        # 3-channel A and 1-channel B of a gray picture must agree pixel for pixel.
        for channel in range(3):
            assert torch.equal(item["A"][channel], item["B"][0])
    if mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
        torch.manual_seed(0)
        first = data[0]["A"]
        assert any(not torch.equal(first, data[0]["A"]) for _ in range(5))


def test_flip_frequency_and_reproducibility() -> None:
    image = pattern(8, 12)
    reference = to_tensor(image)
    mirrored = torch.flip(reference, dims=[2])
    transform = build_transform("none", 8, 8, flip=True, paired=False)

    def flips(seed: int) -> list[bool]:
        torch.manual_seed(seed)
        out = [transform(image)[0] for _ in range(200)]
        assert all(torch.equal(o, reference) or torch.equal(o, mirrored) for o in out)
        return [torch.equal(o, mirrored) for o in out]

    first = flips(0)
    assert 70 <= sum(first) <= 130
    assert flips(0) == first
    never = build_transform("none", 8, 8, flip=False, paired=False)
    assert all(torch.equal(never(image)[0], reference) for _ in range(50))


def test_transform_checks() -> None:
    with pytest.raises(InvalidArgumentError, match="crop_size"):
        build_transform("resize_and_crop", 256, 286, flip=False, paired=True)
    with pytest.raises(InvalidArgumentError, match="crop_size"):
        build_transform("scale_width_and_crop", 100, 128, flip=False, paired=True)
    with pytest.raises(InvalidArgumentError, match="preprocess"):
        build_transform("zoom", 256, 256, flip=False, paired=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="load_size"):
        build_transform("none", 0, 256, flip=False, paired=True)
    paired = build_transform("crop", 286, 16, flip=True, paired=True)
    with pytest.raises(InvalidArgumentError, match="same size"):
        paired(pattern(20, 20), pattern(20, 24))
    with pytest.raises(DataError, match="smaller than crop_size"):
        paired(pattern(10, 20), pattern(10, 20))
    clone = pickle.loads(pickle.dumps(paired))  # DataLoader workers may receive a pickle
    assert clone(pattern(20, 20))[0].shape == (3, 16, 16)


# --- unaligned and single --------------------------------------------------------------------


@pytest.fixture
def domains(tmp_path: Path) -> Path:
    """root/trainA with 3 images, root/trainB with 5."""
    for folder, count in (("trainA", 3), ("trainB", 5)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            Image.fromarray(pattern(24, 24, seed=i)).save(tmp_path / folder / f"{i}.png")
    return tmp_path


def test_unaligned_length_serial_and_direction(domains: Path) -> None:
    data = UnalignedDataset(root=domains, serial=True, load_size=24, crop_size=16)
    assert len(data) == 5
    for i in range(5):
        item = data[i]
        assert item["A_path"] == str(domains / "trainA" / f"{i % 3}.png")
        assert item["B_path"] == str(domains / "trainB" / f"{i}.png")
        assert item["A"].shape == item["B"].shape == (3, 16, 16)
    swapped = UnalignedDataset(root=domains, direction="BtoA", serial=True, in_channels=1)
    assert swapped[4]["A_path"] == str(domains / "trainB" / "4.png")
    assert swapped[4]["B_path"] == str(domains / "trainA" / "1.png")
    assert swapped[4]["A"].shape[0] == 1
    assert len(UnalignedDataset(root=domains, max_items=2)) == 2


def test_unaligned_random_b_is_reproducible(domains: Path) -> None:
    data = UnalignedDataset(root=domains, preprocess="none", flip=False)

    def draws(seed: int) -> list[str]:
        torch.manual_seed(seed)
        return [data[0]["B_path"] for _ in range(20)]

    assert draws(3) == draws(3)
    assert len(set(draws(3))) > 1


def test_single_dataset(tmp_path: Path) -> None:
    Image.fromarray(pattern(30, 50)).save(tmp_path / "x.png")
    data = SingleDataset(root=str(tmp_path))
    item = data[0]
    assert set(item) == {"A", "A_path"}
    assert item["A"].shape == (3, 32, 48)  # each side rounded to a multiple of 4
    assert torch.equal(item["A"], data[0]["A"])  # no flip by default


def test_dataloader_batches(domains: Path) -> None:
    data = UnalignedDataset(root=domains, load_size=20, crop_size=16)
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2)
    batches = list(loader)
    assert [b["A"].shape[0] for b in batches] == [2, 2, 1]
    assert batches[0]["B"].shape == (2, 3, 16, 16)


def test_constructors_suit_the_registry() -> None:
    for cls in (AlignedDataset, UnalignedDataset, SingleDataset):
        params = list(inspect.signature(cls).parameters.values())
        assert all(p.kind is p.KEYWORD_ONLY for p in params)
        assert [p.name for p in params if p.default is p.empty] == ["root"]
        assert set(typing.get_type_hints(cls.__init__)) >= {p.name for p in params}
        summary = (inspect.getdoc(cls) or "").splitlines()[0]
        assert summary.endswith(".") and len(summary) <= 100


# --- decoding --------------------------------------------------------------------------------


def test_formats_and_channel_conversion(tmp_path: Path) -> None:
    gray = tmp_path / "gray.png"
    Image.new("L", (6, 4), 77).save(gray)
    assert read_image(gray, 1).shape == (4, 6, 1)
    assert np.all(read_image(gray, 3) == 77) and read_image(gray, 3).shape == (4, 6, 3)

    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (5, 5), (10, 20, 30, 0)).save(rgba)
    assert read_image(rgba, 3)[0, 0].tolist() == [10, 20, 30]  # alpha dropped, not composited
    assert read_image(rgba, 4)[0, 0].tolist() == [10, 20, 30, 0]
    assert read_image(gray, 4)[0, 0].tolist() == [77, 77, 77, 255]
    assert read_image(rgba, 2)[0, 0].tolist() == [10, 20]
    assert read_image(rgba, 6)[0, 0].tolist() == [10, 20, 30, 10, 20, 30]
    with pytest.raises(InvalidArgumentError, match="channels"):
        read_image(rgba, 0)

    deep = tmp_path / "deep.png"
    values = np.array([[65535, 32896, 0]], np.uint16)
    Image.fromarray(values).save(deep)
    with Image.open(deep) as opened:
        assert opened.mode == "I;16"
    assert read_image(deep, 1)[0, :, 0].tolist() == [255, 128, 0]
    top, mid, _ = to_tensor(read_image(deep, 1))[0, 0].tolist()
    assert top == 1.0 and abs(mid) < 0.01

    palette = tmp_path / "palette.png"
    indexed = Image.new("P", (4, 4), 1)
    indexed.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    indexed.save(palette)
    assert read_image(palette, 3)[0, 0].tolist() == [200, 100, 50]
    indexed.save(palette, transparency=1)
    assert read_image(palette, 4)[0, 0].tolist() == [200, 100, 50, 0]

    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk)  # red
    assert np.abs(read_image(cmyk, 3)[4, 4].astype(int) - [255, 0, 0]).max() <= 3

    colour = pattern(6, 5)
    for suffix in ("tif", "bmp", "webp"):
        path = tmp_path / f"colour.{suffix}"
        Image.fromarray(colour).save(path, **({"lossless": True} if suffix == "webp" else {}))
        assert np.array_equal(read_image(path, 3), colour), suffix


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    picture = np.zeros((10, 20, 3), np.uint8)
    picture[:3, :3] = 255  # a marker in the top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.png"
    Image.fromarray(picture).save(path, exif=exif)
    upright = read_image(path, 3)
    assert upright.shape == (20, 10, 3)
    assert upright[0, -1].tolist() == [255, 255, 255] and upright[0, 0].tolist() == [0, 0, 0]


def test_decompression_bombs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for side in (12, 32):  # 144 pixels: Pillow only warns; 1024: Pillow raises
        path = tmp_path / f"{side}.png"
        Image.new("RGB", (side, side)).save(path)
        with pytest.raises(DataError, match="exceeds limit"):
            read_image(path, 3)


# --- bad files and folders -------------------------------------------------------------------


def make_bad_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good = Image.fromarray(np.concatenate([pattern(16, 16), pattern(16, 16, 1)], axis=1))
    good.save(folder / "a_good.jpg")
    good.save(folder / "b_truncated.jpg")
    raw = (folder / "b_truncated.jpg").read_bytes()
    (folder / "b_truncated.jpg").write_bytes(raw[: len(raw) // 2])
    (folder / "c_empty.png").write_bytes(b"")
    good.save(folder / "d_good.jpg")
    return sorted(folder.iterdir())


def test_unreadable_files_are_skipped_and_counted(tmp_path: Path) -> None:
    files = make_bad_files(tmp_path / "train")
    data = AlignedDataset(root=tmp_path, load_size=16, crop_size=16)
    assert len(data) == 4 and data.skipped == 0  # listing decodes nothing
    with pytest.warns(SkippedImageWarning) as caught:
        item = data[1]
    assert item["A_path"] == str(files[3])  # the next usable file stands in
    for bad in files[1:3]:
        assert any(str(bad) in str(w.message) for w in caught)
    assert data.skipped == 2 and data.skipped_paths == files[1:3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known bad files are not decoded or reported again
        assert data[2]["A_path"] == str(files[3])

    strict = AlignedDataset(root=tmp_path, load_size=16, crop_size=16, strict=True)
    assert strict[0]["A"].shape == (3, 16, 16)
    for index, bad in ((1, files[1]), (2, files[2])):
        with pytest.raises(DataError, match=bad.name):
            strict[index]


def test_all_unusable_raises(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.png").write_bytes(b"not an image")
    data = SingleDataset(root=tmp_path / "only")
    with pytest.warns(SkippedImageWarning), pytest.raises(DataError, match="could be used"):
        data[0]
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(pattern(8, 8)).save(small / "s.png")
    with pytest.raises(DataError, match="smaller than crop_size"):
        SingleDataset(root=small, preprocess="crop", crop_size=16, strict=True)[0]


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        find_images(missing)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"empty.*\.png"):
        find_images(tmp_path / "empty")
    with pytest.raises(DataError, match=r"nowhere.train"):
        AlignedDataset(root=missing)
    (tmp_path / "trainA").mkdir()
    with pytest.raises(DataError, match="trainA/ and trainB/"):
        UnalignedDataset(root=tmp_path)
    with pytest.raises(InvalidArgumentError, match="crop_size"):
        AlignedDataset(root=tmp_path, load_size=128, crop_size=256)


def test_find_images_recursive_sorted_no_loops(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in ("b.PNG", "sub/a.jpeg", "sub/deeper/c.TIFF", ".hidden/d.png", "e.gif"):
        (tmp_path / name).write_bytes(b"")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")  # would recurse forever if followed
    found = find_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "b.PNG",
        "sub/a.jpeg",
        "sub/deeper/c.TIFF",
    ]


# --- real data -------------------------------------------------------------------------------


def test_real_edges2shoes_pairs() -> None:
    root = SHARED_DATA / "edges2shoes_100"
    if not (root / "train").is_dir():
        pytest.skip(f"{root} is absent")
    data = AlignedDataset(root=str(root), max_items=2, strict=True)
    assert len(data) == 2
    for item in (data[0], data[1]):
        assert item["A"].shape == item["B"].shape == (3, 256, 256)
        assert item["A"].min() >= -1.0 and item["B"].max() <= 1.0
