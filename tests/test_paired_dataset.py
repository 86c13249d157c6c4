"""The ``paired`` dataset: two folders matched by name, each side with its own bands, type
and value range, one crop and flip for both sides, and the device cache on its 16-bit data."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from imtrans.data.device_cache import DeviceImageCache
from imtrans.data.folders import SkippedImageWarning
from imtrans.data.image_writing import encode_image
from imtrans.data.native_images import read_native
from imtrans.data.paired_folders import PairedDataset
from imtrans.data.value_range import ValueRange, dtype_range
from imtrans.errors import DataError

CPU = torch.device("cpu")
SIZE = 40


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(image, path.suffix))
    return path


def multiband_pairs(root: Path, names: list[str], split: str = "train", seed: int = 0
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pairs of a 6-band float32 TIFF (A) and a 1-band uint16 PNG (B) under ``root``."""
    rng = np.random.default_rng(seed)
    pairs = {}
    for name in names:
        a = rng.uniform(0, 1, (SIZE, SIZE, 6)).astype(np.float32)
        b = rng.integers(0, 65536, (SIZE, SIZE, 1)).astype(np.uint16)
        write(root / f"{split}A" / f"{name}.tif", a)
        write(root / f"{split}B" / f"{name}.png", b)
        pairs[name] = a, b
    return pairs


def one_line(error: pytest.ExceptionInfo[DataError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- matching -------------------------------------------------------------------------------


def test_pairs_match_by_name_across_extensions_types_and_band_counts(tmp_path: Path) -> None:
    pairs = multiband_pairs(tmp_path, ["b", "a", "c"])
    data = PairedDataset(root=tmp_path, in_channels=6, out_channels=1, preprocess="none",
                         flip=False)
    assert len(data) == 3 and data.unmatched == 0
    assert data.values["A"].dtype == "float32" and data.values["A"].channels == 6
    assert data.values["B"].dtype == "uint16" and data.values["B"].channels == 1
    for index, name in enumerate(["a", "b", "c"]):  # sorted by name
        item = data[index]
        assert Path(item["A_path"]).name == f"{name}.tif"
        assert Path(item["B_path"]).name == f"{name}.png"
        a, b = pairs[name]
        # preprocess "none" on a multiple of 4, no flip: the whole image, normalised.
        assert item["A"].dtype == torch.float32 and item["A"].shape == (6, SIZE, SIZE)
        assert torch.equal(item["A"], torch.from_numpy(
            dtype_range("float32").normalize(a.transpose(2, 0, 1))))
        assert item["B"].shape == (1, SIZE, SIZE)
        assert torch.equal(item["B"], torch.from_numpy(
            dtype_range("uint16").normalize(b.transpose(2, 0, 1))))


def test_names_in_subfolders_are_matched_by_their_relative_path(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 1), np.uint16)
    for side in "AB":
        write(tmp_path / f"train{side}" / "p1" / "x.png", image)
        write(tmp_path / f"train{side}" / "p2" / "x.tif", image)
    data = PairedDataset(root=tmp_path, in_channels=1, out_channels=1, preprocess="none")
    assert [Path(data[i]["B_path"]).parent.name for i in range(2)] == ["p1", "p2"]


def test_unmatched_files_are_listed_in_one_error(tmp_path: Path) -> None:
    multiband_pairs(tmp_path, ["a", "b"])
    write(tmp_path / "trainA" / "only_a1.tif", np.zeros((8, 8, 6), np.float32))
    write(tmp_path / "trainA" / "only_a2.tif", np.zeros((8, 8, 6), np.float32))
    write(tmp_path / "trainB" / "only_b.png", np.zeros((8, 8, 1), np.uint16))
    with pytest.raises(DataError) as error:
        PairedDataset(root=tmp_path, in_channels=6, out_channels=1)
    line = one_line(error)
    assert "2 file(s)" in line and "only_a1" in line and "only_a2" in line
    assert "1 file(s)" in line and "only_b" in line and "strict = false" in line


def test_many_unmatched_files_are_listed_up_to_ten_then_counted(tmp_path: Path) -> None:
    multiband_pairs(tmp_path, ["a"])
    for i in range(13):
        write(tmp_path / "trainA" / f"extra{i:02d}.tif", np.zeros((8, 8, 6), np.float32))
    with pytest.raises(DataError) as error:
        PairedDataset(root=tmp_path, in_channels=6, out_channels=1)
    line = one_line(error)
    assert "13 file(s)" in line and "extra09" in line and "extra10" not in line
    assert "and 3 more" in line


def test_without_strict_unmatched_files_are_left_out_and_counted(tmp_path: Path) -> None:
    multiband_pairs(tmp_path, ["a", "b"])
    write(tmp_path / "trainA" / "only_a.tif", np.zeros((8, 8, 6), np.float32))
    write(tmp_path / "trainB" / "only_b1.png", np.zeros((8, 8, 1), np.uint16))
    write(tmp_path / "trainB" / "only_b2.png", np.zeros((8, 8, 1), np.uint16))
    with pytest.warns(SkippedImageWarning) as caught:
        data = PairedDataset(root=tmp_path, in_channels=6, out_channels=1, strict=False,
                             preprocess="none")
    (warning,) = caught
    assert str(warning.message) == (
        "left out 3 file(s) without a partner of the same name (strict = false): "
        "trainA/only_a, trainB/only_b1, trainB/only_b2")
    assert data.unmatched == 3 and len(data) == 2
    assert sorted(Path(data[i]["A_path"]).stem for i in range(2)) == ["a", "b"]


def test_no_pair_at_all_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "trainA" / "a.tif", np.zeros((8, 8, 1), np.uint16))
    write(tmp_path / "trainB" / "b.tif", np.zeros((8, 8, 1), np.uint16))
    with pytest.raises(DataError, match=r"no file of .* has a partner"):
        PairedDataset(root=tmp_path, in_channels=1, out_channels=1, strict=False)


def test_all_matched_is_silent(tmp_path: Path) -> None:
    multiband_pairs(tmp_path, ["a"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PairedDataset(root=tmp_path, in_channels=6, out_channels=1,
                             strict=False).unmatched == 0


def test_a_name_twice_in_one_folder_is_refused(tmp_path: Path) -> None:
    multiband_pairs(tmp_path, ["a"])
    write(tmp_path / "trainA" / "a.png", np.zeros((SIZE, SIZE, 1), np.uint16))
    with pytest.raises(DataError) as error:
        PairedDataset(root=tmp_path, in_channels=6, out_channels=1, strict=False)
    line = one_line(error)
    assert "'a'" in line and "a.png" in line and "a.tif" in line and "unique" in line


def test_a_missing_side_names_the_layout(tmp_path: Path) -> None:
    write(tmp_path / "trainA" / "a.tif", np.zeros((8, 8, 1), np.uint16))
    with pytest.raises(DataError) as error:
        PairedDataset(root=tmp_path, in_channels=1, out_channels=1)
    line = one_line(error)
    assert "trainB" in line and "same names" in line


def test_sides_of_different_sizes_are_refused_naming_both(tmp_path: Path) -> None:
    write(tmp_path / "trainA" / "a.tif", np.zeros((32, 32, 1), np.uint16))
    write(tmp_path / "trainB" / "a.tif", np.zeros((32, 36, 1), np.uint16))
    data = PairedDataset(root=tmp_path, in_channels=1, out_channels=1, preprocess="none")
    with pytest.raises(DataError) as error:
        data[0]
    line = one_line(error)
    assert "a.tif" in line and "32x32" in line and "36x32" in line and "same size" in line


def test_without_strict_a_pair_of_different_sizes_is_skipped(tmp_path: Path) -> None:
    write(tmp_path / "trainA" / "a.tif", np.zeros((32, 32, 1), np.uint16))
    write(tmp_path / "trainB" / "a.tif", np.zeros((32, 36, 1), np.uint16))
    write(tmp_path / "trainA" / "b.tif", np.ones((32, 32, 1), np.uint16))
    write(tmp_path / "trainB" / "b.tif", np.ones((32, 32, 1), np.uint16))
    data = PairedDataset(root=tmp_path, in_channels=1, out_channels=1, preprocess="none",
                         strict=False)
    with pytest.warns(SkippedImageWarning, match="a.tif"):
        item = data[0]
    assert Path(item["A_path"]).name == "b.tif"


def test_a_side_read_with_the_wrong_band_count_is_refused(tmp_path: Path) -> None:
    multiband_pairs(tmp_path, ["a"])
    data = PairedDataset(root=tmp_path, in_channels=3, out_channels=1, preprocess="none")
    with pytest.raises(DataError) as error:
        data[0]
    line = one_line(error)
    assert "a.tif" in line and "6 bands" in line and "3 channels" in line


# --- transforms -----------------------------------------------------------------------------


def same_scene(root: Path, count: int = 3) -> None:
    """A: 3-band uint16 TIFFs; B: their first band as 1-band uint16 PNGs (one array)."""
    rng = np.random.default_rng(1)
    for i in range(count):
        scene = rng.integers(0, 65536, (SIZE, SIZE, 3)).astype(np.uint16)
        write(root / "trainA" / f"{i}.tif", scene)
        write(root / "trainB" / f"{i}.png", scene[:, :, :1])


def test_both_sides_get_the_same_random_crop_and_flip(tmp_path: Path) -> None:
    same_scene(tmp_path)
    # load_size = the files' size: no resize, so A's first band and B are the same numbers.
    data = PairedDataset(root=tmp_path, in_channels=3, out_channels=1, load_size=SIZE,
                         crop_size=24, flip=True)
    crops = set()
    for seed in range(12):
        torch.manual_seed(seed)
        item = data[seed % 3]
        assert item["A"].shape == (3, 24, 24) and item["B"].shape == (1, 24, 24)
        assert torch.equal(item["A"][:1], item["B"])
        crops.add((seed % 3, item["B"].sum().item()))
    assert len(crops) > 6  # the crops and flips really vary


def test_b_to_a_reads_the_input_from_the_b_folder(tmp_path: Path) -> None:
    pairs = multiband_pairs(tmp_path, ["a", "b"])
    data = PairedDataset(root=tmp_path, direction="BtoA", in_channels=1, out_channels=6,
                         preprocess="none", flip=False)
    item = data[1]
    assert Path(item["A_path"]).parent.name == "trainB" and Path(item["A_path"]).stem == "b"
    assert Path(item["B_path"]).parent.name == "trainA"
    assert item["A"].shape == (1, SIZE, SIZE) and item["B"].shape == (6, SIZE, SIZE)
    assert data.values["A"].dtype == "uint16" and data.values["B"].dtype == "float32"
    a, b = pairs["b"]
    assert torch.equal(item["B"], torch.from_numpy(
        dtype_range("float32").normalize(a.transpose(2, 0, 1))))
    assert torch.equal(item["A"], torch.from_numpy(
        dtype_range("uint16").normalize(b.transpose(2, 0, 1))))


def test_max_items_counts_pairs(tmp_path: Path) -> None:
    multiband_pairs(tmp_path, ["a", "b", "c"])
    data = PairedDataset(root=tmp_path, in_channels=6, out_channels=1, max_items=2)
    assert len(data) == 2


# --- value ranges ---------------------------------------------------------------------------


def test_each_domain_takes_its_own_value_range(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMTRANS_CACHE_DIR", str(tmp_path / "cache"))
    pairs = multiband_pairs(tmp_path / "data", ["a", "b"])
    data = PairedDataset(root=tmp_path / "data", in_channels=6, out_channels=1,
                         preprocess="none", flip=False,
                         value_range={"A": [0, 0.5], "B": "auto"})
    assert data.values["A"].range == ValueRange(0, 0.5)
    b_values = np.concatenate([b.ravel() for _, b in pairs.values()]).astype(np.float64)
    low, high = np.percentile(b_values, (0.5, 99.5))
    assert data.values["B"].range.low == pytest.approx(low)
    assert data.values["B"].range.high == pytest.approx(high)
    item = data[0]
    a, b = pairs["a"]
    assert torch.equal(item["A"], torch.from_numpy(
        ValueRange(0, 0.5).normalize(a.transpose(2, 0, 1))))
    assert (item["A"] == 1).float().mean() > 0.4  # the upper half of 0..1 is clipped
    assert torch.equal(item["B"], torch.from_numpy(
        data.values["B"].range.normalize(b.transpose(2, 0, 1))))


# --- the device cache -----------------------------------------------------------------------


def test_the_device_cache_holds_normalised_16_bit_images(tmp_path: Path) -> None:
    same_scene(tmp_path)
    load, crop = 36, 32
    data = PairedDataset(root=tmp_path, in_channels=3, out_channels=1, load_size=load,
                         crop_size=crop, flip=True, value_range={"A": [1000, 60000]})
    assert data.cache_element_bytes == 4
    cache = DeviceImageCache.fill(data, CPU, load_size=load, crop_size=crop, flip=True)
    for table in cache.tables:
        for images in table.values():
            assert images.dtype == torch.float32
            assert images.min() >= -1 and images.max() <= 1
    assert cache.tables[0]["A"].shape == (3, 3, load, load)
    assert cache.tables[0]["B"].shape == (3, 1, load, load)
    plan = cache.plan([[(0, 1), (2, 2)], [(1, 3)]], centre=True)
    offset = (load - crop) // 2
    for number, indices in enumerate([[0, 2], [1]]):
        batch = cache.batch(plan, number)
        for row, index in enumerate(indices):
            for key, channels, value_range in (("A", 3, ValueRange(1000, 60000)),
                                               ("B", 1, dtype_range("uint16"))):
                path = tmp_path / f"train{key}" / (f"{index}.tif" if key == "A"
                                                  else f"{index}.png")
                resized = data.transform.resize(read_native(path, channels))
                assert resized.shape == (load, load, channels)
                expected = value_range.normalize(resized.transpose(2, 0, 1))
                expected = expected[:, offset:offset + crop, offset:offset + crop]
                assert torch.equal(batch[key][row], torch.from_numpy(expected))


def test_the_cached_batch_is_the_streamed_item_at_the_same_place(tmp_path: Path) -> None:
    multiband_pairs(tmp_path, ["a", "b", "c"])
    streamed = PairedDataset(root=tmp_path, in_channels=6, out_channels=1, load_size=36,
                             crop_size=36, flip=False)  # resized, not cropped
    cache = DeviceImageCache.fill(streamed, CPU, load_size=36, crop_size=28, flip=True)
    plan = cache.plan([[(0, 5), (1, 6), (2, 7)]])
    batch = cache.batch(plan, 0)
    assert batch["A"].shape == (3, 6, 28, 28) and batch["B"].shape == (3, 1, 28, 28)
    for row in range(3):
        entry, top, left, flip = plan.draws[row, 0].tolist()
        item = streamed[entry]
        for key in "AB":
            expected = item[key][..., top:top + 28, left:left + 28]
            expected = expected.flip(-1) if flip else expected
            assert torch.equal(batch[key][row], expected)


def test_the_device_cache_of_a_skipped_pair_names_the_file(tmp_path: Path) -> None:
    same_scene(tmp_path, count=2)
    write(tmp_path / "trainA" / "9.tif", np.zeros((SIZE, SIZE + 4, 3), np.uint16))
    write(tmp_path / "trainB" / "9.png", np.zeros((SIZE, SIZE, 1), np.uint16))
    data = PairedDataset(root=tmp_path, in_channels=3, out_channels=1, load_size=36,
                         crop_size=32, strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        cache = DeviceImageCache.fill(data, CPU, load_size=36, crop_size=32, flip=False)
    assert [Path(p).name for p in cache.skipped] == ["9.tif"]


def rgb_pairs(root: Path, count: int = 3) -> None:
    """8-bit RGB PNGs, the same image on both sides."""
    rng = np.random.default_rng(4)
    for i in range(count):
        image = rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8)
        write(root / "trainA" / f"{i}.png", image)
        write(root / "trainB" / f"{i}.png", image)


@pytest.mark.parametrize("value_range", ["dtype", [0, 255], {"A": [0, 255], "B": "dtype"}])
def test_8_bit_data_in_0_255_is_cached_as_uint8_whichever_way_the_range_is_given(
        tmp_path: Path, value_range: object) -> None:
    rgb_pairs(tmp_path)
    data = PairedDataset(root=tmp_path, in_channels=3, out_channels=3, load_size=36,
                         crop_size=36, flip=False, value_range=value_range)
    assert data.cache_element_bytes == 1
    cache = DeviceImageCache.fill(data, CPU, load_size=36, crop_size=36, flip=False)
    assert cache.tables[0]["A"].dtype == torch.uint8
    batch = cache.batch(cache.plan([[(1, 0)]]), 0)
    assert torch.equal(batch["A"][0], data[1]["A"])  # bit for bit the streamed floats


def test_a_float_cache_of_8_bit_images_keeps_the_streamed_floats(tmp_path: Path) -> None:
    # A is 8-bit in 0..255, B 16-bit: the cache holds float32, A's floats as the transforms
    # make them (x / 127.5 - 1), not by another arithmetic a bit away.
    rng = np.random.default_rng(5)
    for i in range(2):
        write(tmp_path / "trainA" / f"{i}.png",
              rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8))
        write(tmp_path / "trainB" / f"{i}.png",
              rng.integers(0, 65536, (SIZE, SIZE, 1)).astype(np.uint16))
    data = PairedDataset(root=tmp_path, in_channels=3, out_channels=1, load_size=36,
                         crop_size=36, flip=False, value_range=[0, 255])
    assert data.cache_element_bytes == 4
    cache = DeviceImageCache.fill(data, CPU, load_size=36, crop_size=36, flip=False)
    batch = cache.batch(cache.plan([[(0, 0), (1, 0)]]), 0)
    for row in range(2):
        assert torch.equal(batch["A"][row], data[row]["A"])
        assert torch.equal(batch["B"][row], data[row]["B"])


def test_a_16_bit_file_among_8_bit_ones_is_not_cached_as_8_bit(tmp_path: Path) -> None:
    rgb_pairs(tmp_path, count=2)
    write(tmp_path / "trainA" / "9.tif", np.full((SIZE, SIZE, 3), 40000, np.uint16))
    write(tmp_path / "trainB" / "9.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    data = PairedDataset(root=tmp_path, in_channels=3, out_channels=3, load_size=36,
                         crop_size=32)
    assert data.cache_element_bytes == 1  # the first files are 8-bit
    with pytest.raises(DataError) as error:
        DeviceImageCache.fill(data, CPU, load_size=36, crop_size=32, flip=False)
    line = one_line(error)
    assert "9.tif" in line and "uint16" in line and "data.cache" in line
