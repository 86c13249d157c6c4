"""Value ranges: the forms of data.value_range, the types' ranges, "auto" and its cache, and
the mapping onto [-1, 1] and back (8-bit data keeps its exact floats)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from imtrans.data.image_writing import encode_image
from imtrans.data.native_images import read_native
from imtrans.data.transforms import to_tensor
from imtrans.data.value_range import (
    AUTO_FILES,
    AUTO_PERCENTILES,
    DomainValues,
    ValueRange,
    auto_range,
    dtype_range,
    parse_value_ranges,
    to_network_tensor,
    values_from_manifest,
    values_manifest,
)
from imtrans.errors import DataError, InvalidArgumentError

# --- the forms of data.value_range ----------------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [
    ("dtype", {"A": "dtype", "B": "dtype"}),
    ("auto", {"A": "auto", "B": "auto"}),
    ([-1024, 3071], {"A": (-1024.0, 3071.0), "B": (-1024.0, 3071.0)}),
    ([0.0, 0.5], {"A": (0.0, 0.5), "B": (0.0, 0.5)}),
    ({"A": [-1024, 3071]}, {"A": (-1024.0, 3071.0), "B": "dtype"}),
    ({"B": "auto"}, {"A": "dtype", "B": "auto"}),
    ({"A": "auto", "B": [0, 4095]}, {"A": "auto", "B": (0.0, 4095.0)}),
    ({}, {"A": "dtype", "B": "dtype"}),
])
def test_one_spec_or_a_table_gives_a_spec_per_domain(spec: object, expected: dict) -> None:
    assert parse_value_ranges(spec) == expected


@pytest.mark.parametrize(("spec", "named"), [
    ("Auto", "'Auto'"), ("dtype ", "'dtype '"), ([1], "[1]"), ([1, 2, 3], "[1, 2, 3]"),
    ([3, 1], "[3, 1]"), ([2, 2], "[2, 2]"), ([0, float("inf")], "inf"),
    ([0, float("nan")], "nan"), (["0", "1"], "'0'"), ([True, 5], "True"), (True, "True"),
    (None, "None"), (255, "255"), ({"C": "dtype"}, "'C'"), ({"A": "minmax"}, "'minmax'"),
    ({"A": [5, 1]}, "value_range.A"),
])
def test_a_bad_spec_is_refused_in_one_line_naming_it(spec: object, named: str) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        parse_value_ranges(spec)
    message = str(error.value)
    assert "\n" not in message and named in message and "value_range" in message


@pytest.mark.parametrize(("low", "high"), [(1, 1), (2, 1), (0, float("inf")),
                                           (float("nan"), 1)])
def test_a_value_range_needs_finite_low_below_high(low: float, high: float) -> None:
    with pytest.raises(InvalidArgumentError, match="low < high"):
        ValueRange(low, high)


@pytest.mark.parametrize(("dtype", "low", "high"), [
    ("uint8", 0, 255), ("uint16", 0, 65535), ("int16", -32768, 32767),
    ("int32", -2**31, 2**31 - 1), ("float32", 0, 1), ("float64", 0, 1)])
def test_the_range_of_a_type_is_its_full_range(dtype: str, low: float, high: float) -> None:
    found = dtype_range(dtype)
    assert (found.low, found.high) == (low, high)
    assert found.span == high - low
    assert found.is_8bit == (dtype == "uint8")


# --- normalise and denormalise --------------------------------------------------------------


@pytest.mark.parametrize(("low", "high"), [(0, 255), (0, 65535), (-1024, 3071), (-2.5, 7.25),
                                           (0, 1)])
def test_denormalize_inverts_normalize_inside_the_range(low: float, high: float) -> None:
    value_range = ValueRange(low, high)
    values = np.linspace(low, high, 1001)
    network = value_range.normalize(values)
    assert network.dtype == np.float32
    assert network[0] == -1 and network[-1] == 1
    assert np.all(np.diff(network) > 0)
    back = value_range.denormalize(torch.from_numpy(network))
    assert back.dtype == torch.float32
    assert np.abs(back.numpy() - values).max() <= 1e-6 * (high - low)


def test_normalize_clips_outside_the_range_and_maps_nan_to_the_low_end() -> None:
    value_range = ValueRange(-1024, 3071)
    out = value_range.normalize(np.array([-5000, -1024, 1023.5, 3071, 9000, np.nan]))
    assert out.tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0, -1.0]


def test_denormalize_clamps_network_values_outside_minus_one_one() -> None:
    value_range = ValueRange(0, 4095)
    assert value_range.denormalize(torch.tensor([-1.5, -1.0, 0.0, 1.0, 3.0])).tolist() == [
        0.0, 0.0, 2047.5, 4095.0, 4095.0]


@pytest.mark.parametrize("channels", (1, 3, 4, 6))
def test_8_bit_images_become_exactly_the_floats_of_to_tensor(channels: int) -> None:
    image = np.random.default_rng(channels).integers(0, 256, (7, 9, channels)).astype(np.uint8)
    image.flat[:2] = 0, 255
    expected = to_tensor(image)
    for value_range in (None, dtype_range("uint8"), ValueRange(0, 255)):
        got = to_network_tensor(image, value_range)
        assert got.dtype == torch.float32 and got.shape == (channels, 7, 9)
        assert torch.equal(got, expected)  # bit for bit


def test_other_types_and_ranges_go_through_normalize() -> None:
    image = np.array([[[0, 65535], [32768, 1000]]], np.uint16)  # 1 x 2 x 2
    got = to_network_tensor(image, None)
    assert got.shape == (2, 1, 2)
    assert torch.equal(got, torch.from_numpy(dtype_range("uint16").normalize(
        image.transpose(2, 0, 1))))
    # uint8 data given another range is normalised with it, not as 0..255.
    eight = np.full((2, 2, 1), 100, np.uint8)
    assert torch.allclose(to_network_tensor(eight, ValueRange(0, 200)), torch.zeros(1, 2, 2))


def test_the_manifest_entry_round_trips_and_old_checkpoints_have_none() -> None:
    values = {"A": DomainValues(ValueRange(-1024, 3071), "int16", 1),
              "B": DomainValues(dtype_range("uint16"), "uint16", 3)}
    entry = values_manifest(values)
    assert entry == {"A": {"range": [-1024, 3071], "dtype": "int16", "channels": 1},
                     "B": {"range": [0.0, 65535.0], "dtype": "uint16", "channels": 3}}
    assert values_from_manifest({"values": entry}) == values
    assert values_from_manifest({}) is None
    assert values_from_manifest({"values": {"A": {"range": [1, 1], "dtype": "uint8",
                                                  "channels": 1}}}) is None


# --- "auto" ---------------------------------------------------------------------------------


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("IMTRANS_CACHE_DIR", str(folder))
    return folder


def uint16_folder(folder: Path, count: int = 4, seed: int = 0) -> list[Path]:
    """``count`` 16 x 16 uint16 TIFFs of values around 1000..3000, a few hot pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        image = rng.normal(2000, 300, (16, 16, 1)).clip(0, 65535).astype(np.uint16)
        image[0, 0, 0] = 65535  # a hot pixel the percentiles must ignore
        paths.append(folder / f"{i:02d}.tif")
        paths[-1].write_bytes(encode_image(image, ".tif"))
    return paths


def reader(calls: list[Path]) -> Callable[[Path], np.ndarray]:
    """read_native of one channel, noting each path read in ``calls``."""
    def read(path: Path) -> np.ndarray:
        calls.append(path)
        return read_native(path, 1)
    return read


def test_auto_takes_robust_percentiles_of_the_files(tmp_path: Path, cache_dir: Path) -> None:
    paths = uint16_folder(tmp_path / "trainA")
    found = auto_range(paths, lambda p: read_native(p, 1), channels=1)
    values = np.concatenate([read_native(p, 1).ravel() for p in paths]).astype(np.float64)
    low, high = np.percentile(values, AUTO_PERCENTILES)
    assert (found.low, found.high) == (pytest.approx(low), pytest.approx(high))
    assert 500 < found.low < found.high < 3500  # the hot pixels are outside
    assert list((cache_dir / "value_ranges").glob("*.json"))


def test_auto_is_read_from_its_cache_the_second_time(tmp_path: Path, cache_dir: Path) -> None:
    paths = uint16_folder(tmp_path / "trainA")
    calls: list[Path] = []
    first = auto_range(paths, reader(calls), channels=1)
    assert len(calls) == len(paths)

    def no_reading(path: Path) -> np.ndarray:
        raise AssertionError(f"read {path} although the range is cached")

    assert auto_range(paths, no_reading, channels=1) == first


def test_touching_a_file_computes_the_range_again(tmp_path: Path, cache_dir: Path) -> None:
    paths = uint16_folder(tmp_path / "trainA")
    calls: list[Path] = []
    first = auto_range(paths, reader(calls), channels=1)
    stat = paths[1].stat()
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    calls.clear()
    assert auto_range(paths, reader(calls), channels=1) == first  # same pixels, same range
    assert len(calls) == len(paths)  # but read again
    # New pixels under the same name: a new range.
    brighter = read_native(paths[2], 1) + np.uint16(5000)
    paths[2].write_bytes(encode_image(brighter, ".tif"))
    assert auto_range(paths, reader(calls), channels=1).high > first.high + 1000


def test_another_channel_count_is_another_cache_entry(tmp_path: Path, cache_dir: Path) -> None:
    paths = uint16_folder(tmp_path / "trainA")
    auto_range(paths, reader([]), channels=1)
    calls: list[Path] = []
    auto_range(paths, reader(calls), channels=3)
    assert calls


def test_a_damaged_cache_entry_is_computed_again(tmp_path: Path, cache_dir: Path) -> None:
    paths = uint16_folder(tmp_path / "trainA")
    first = auto_range(paths, reader([]), channels=1)
    (entry,) = (cache_dir / "value_ranges").glob("*.json")
    entry.write_text("{not json")
    calls: list[Path] = []
    assert auto_range(paths, reader(calls), channels=1) == first
    assert calls


def test_auto_refuses_files_without_spread_in_one_line(tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "flat"
    folder.mkdir()
    path = folder / "flat.tif"
    path.write_bytes(encode_image(np.full((8, 8, 1), 700, np.uint16), ".tif"))
    with pytest.raises(DataError) as error:
        auto_range([path], lambda p: read_native(p, 1), channels=1, where="value_range.B")
    message = str(error.value)
    assert "\n" not in message and "value_range.B" in message and "700" in message


def test_auto_refuses_when_no_file_reads(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00 not a tiff")
    with pytest.raises(DataError, match="none of the 1 sampled files could be read"):
        auto_range([path], lambda p: read_native(p, 1), channels=1)


@pytest.mark.parametrize(("count", "read"), [(1, 1), (5, 5), (64, 64), (65, 64), (200, 64)])
def test_auto_reads_every_file_of_a_short_list_and_spreads_over_a_long_one(
        cache_dir: Path, count: int, read: int) -> None:
    paths = [Path(f"/nowhere/{i:03d}.tif") for i in range(count)]  # no cache entry: not found
    calls: list[int] = []

    def values(path: Path) -> np.ndarray:
        calls.append(int(path.stem))
        return np.arange(10.0)

    auto_range(paths, values, channels=1)
    assert len(calls) == len(set(calls)) == read
    assert calls[0] == 0 and calls[-1] == count - 1  # the first and the last file
    assert AUTO_FILES == 64


def test_two_parts_of_the_same_files_get_their_own_cache_entries(
        tmp_path: Path, cache_dir: Path) -> None:
    paths = uint16_folder(tmp_path / "train")
    auto_range(paths, reader([]), channels=1, part="left half")
    calls: list[Path] = []
    auto_range(paths, reader(calls), channels=1, part="right half")
    assert calls  # not the left half's entry
    assert len(list((cache_dir / "value_ranges").glob("*.json"))) == 2


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_auto_on_side_by_side_files_gives_each_half_its_range(
        tmp_path: Path, cache_dir: Path, direction: str) -> None:
    from imtrans.data.folders import AlignedDataset

    rng = np.random.default_rng(3)
    folder = tmp_path / "data" / "train"
    folder.mkdir(parents=True)
    for i in range(3):
        left = rng.integers(1000, 2000, (16, 16, 1))
        right = rng.integers(30000, 40000, (16, 16, 1))
        (folder / f"{i}.png").write_bytes(encode_image(
            np.concatenate([left, right], axis=1).astype(np.uint16), ".png"))
    # Both directions, each after the other has filled the cache.
    for way in (direction, "BtoA" if direction == "AtoB" else "AtoB"):
        values = AlignedDataset(root=tmp_path / "data", in_channels=1, out_channels=1,
                                value_range="auto", direction=way).values
        left_range, right_range = (values["A"], values["B"]) if way == "AtoB" else (
            values["B"], values["A"])
        assert 1000 <= left_range.range.low < left_range.range.high < 2000, way
        assert 30000 <= right_range.range.low < right_range.range.high < 40000, way
