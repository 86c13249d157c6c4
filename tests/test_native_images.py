"""Native image reading: every sample type and band count survives read -> normalise ->
denormalise -> write -> read, and the files that cannot be read are refused in one line."""

from __future__ import annotations

import builtins
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from imtrans.data.image_writing import convert_dtype, encode_image
from imtrans.data.images import read_image
from imtrans.data.native_images import decode_image, read_native
from imtrans.data.value_range import ValueRange, dtype_range
from imtrans.errors import DataError

TYPES = ("uint8", "uint16", "int16", "float32")
BANDS = (1, 3, 4, 6, 16)
#: The range float images are drawn from and normalised with (not 0..1: native units).
FLOAT_RANGE = ValueRange(-2.0, 5.0)


def random_image(dtype: str, bands: int, seed: int = 0, shape: tuple[int, int] = (9, 11)
                 ) -> np.ndarray:
    """An ``H x W x bands`` image of ``dtype`` spanning the type's range (floats: FLOAT_RANGE),
    both ends included."""
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        image = rng.uniform(FLOAT_RANGE.low, FLOAT_RANGE.high, (*shape, bands))
        image.flat[:2] = FLOAT_RANGE.low, FLOAT_RANGE.high
        return image.astype(np.float32)
    info = np.iinfo(dtype)
    image = rng.integers(info.min, info.max, (*shape, bands), endpoint=True).astype(dtype)
    image.flat[:2] = info.min, info.max
    return image


def write(path: Path, image: np.ndarray) -> Path:
    path.write_bytes(encode_image(image, path.suffix))
    return path


def single_error_line(error: pytest.ExceptionInfo[DataError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def png16(image: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG written by hand (gray 0, RGB 2, gray + alpha 4, RGBA 6): Pillow writes no
    16-bit gray + alpha, OpenCV none at all."""
    height, width, _ = image.shape
    rows = b"".join(b"\x00" + image[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


# --- round trips ---------------------------------------------------------------------------


def round_trip(image: np.ndarray, value_range: ValueRange, first: Path, second: Path
               ) -> np.ndarray:
    """``image`` written to ``first``, read, normalised, mapped back, converted to its type,
    written to ``second`` and read again."""
    write(first, image)
    bands = image.shape[2]
    read = read_native(first, bands)
    assert read.dtype == image.dtype and read.shape == image.shape
    assert np.array_equal(read, image)  # the reader itself loses nothing
    network = value_range.normalize(read)
    assert network.dtype == np.float32 and network.min() >= -1 and network.max() <= 1
    native = value_range.denormalize(torch.from_numpy(network)).numpy()
    write(second, convert_dtype(native, image.dtype))
    again = read_native(second, bands)
    assert again.dtype == image.dtype and again.shape == image.shape
    return again


@pytest.mark.parametrize("bands", BANDS)
@pytest.mark.parametrize("dtype", TYPES)
def test_a_tiff_of_every_type_and_band_count_survives_the_round_trip(
        tmp_path: Path, dtype: str, bands: int) -> None:
    image = random_image(dtype, bands)
    value_range = FLOAT_RANGE if dtype == "float32" else dtype_range(dtype)
    again = round_trip(image, value_range, tmp_path / "in.tif", tmp_path / "out.tif")
    if dtype == "float32":
        error = np.abs(again.astype(np.float64) - image) / value_range.span
        assert error.max() <= 1e-6, error.max()
    else:
        levels = np.abs(again.astype(np.int64) - image.astype(np.int64))
        assert levels.max() <= 1
        assert levels.max() == 0  # float32 holds every 8- and 16-bit level: exact


@pytest.mark.parametrize("bands", (1, 3, 4))
@pytest.mark.parametrize("dtype", ("uint8", "uint16"))
def test_an_8_or_16_bit_png_survives_the_round_trip_exactly(
        tmp_path: Path, dtype: str, bands: int) -> None:
    image = random_image(dtype, bands, seed=1)
    again = round_trip(image, dtype_range(dtype), tmp_path / "in.png", tmp_path / "out.png")
    assert np.array_equal(again, image)


@pytest.mark.parametrize(("dtype", "low", "high"), [
    ("uint16", 0, 65535), ("int16", -32768, 32767), ("int16", -1024, 3071),
    ("uint16", 0, 4095), ("uint8", 0, 255), ("uint16", 100.5, 60000.25)])
def test_every_level_inside_a_range_comes_back_as_itself(dtype: str, low: float,
                                                         high: float) -> None:
    info = np.iinfo(dtype)
    levels = np.arange(max(info.min, np.ceil(low)), min(info.max, np.floor(high)) + 1)
    levels = levels.astype(dtype)
    value_range = ValueRange(low, high)
    back = convert_dtype(value_range.denormalize(
        torch.from_numpy(value_range.normalize(levels))).numpy(), dtype)
    assert np.array_equal(back, levels)


def test_levels_outside_the_range_come_back_clipped_to_its_ends() -> None:
    value_range = ValueRange(-1024, 3071)
    values = np.array([-3000, -1025, 3072, 30000], np.int16)
    back = convert_dtype(value_range.denormalize(
        torch.from_numpy(value_range.normalize(values))).numpy(), "int16")
    assert back.tolist() == [-1024, -1024, 3071, 3071]


# --- TIFF layouts --------------------------------------------------------------------------


@pytest.mark.parametrize("bands", (3, 4, 6, 16))
@pytest.mark.parametrize("dtype", TYPES)
def test_a_planar_tiff_reads_as_the_interleaved_image(tmp_path: Path, dtype: str,
                                                      bands: int) -> None:
    image = random_image(dtype, bands, seed=2)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(image, 2, 0), planarconfig="separate",
                     photometric="minisblack")
    read = read_native(path, bands)
    assert read.dtype == image.dtype and np.array_equal(read, image)


@pytest.mark.parametrize("planar", ("contig", "separate"))
@pytest.mark.parametrize("bands", (3, 4))
def test_an_8_bit_band_stack_of_3_or_4_bands_is_read(tmp_path: Path, bands: int,
                                                     planar: str) -> None:
    # MINISBLACK (what tifffile and GDAL write for band stacks), which Pillow cannot open.
    image = random_image("uint8", bands, seed=3)
    path = tmp_path / "stack.tif"
    data = np.moveaxis(image, 2, 0) if planar == "separate" else image
    tifffile.imwrite(path, data, planarconfig=planar, photometric="minisblack")
    assert np.array_equal(read_native(path, bands), image)


def test_an_8_bit_rgb_tiff_still_goes_through_pillow(tmp_path: Path) -> None:
    image = random_image("uint8", 3, seed=4)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, image, photometric="rgb")
    decoded = decode_image(path)
    assert isinstance(decoded, Image.Image)
    assert np.array_equal(read_native(path, 3), read_image(path, 3))
    assert np.array_equal(read_native(path, 3), image)


def test_a_multi_page_tiff_is_refused_in_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((8, 9), np.uint16))
    tifffile.imwrite(path, np.ones((8, 9), np.uint16), append=True)
    with pytest.raises(DataError) as error:
        read_native(path, 1)
    line = single_error_line(error)
    assert str(path) in line and "multi-page" in line and "2 images" in line


def test_a_tiff_volume_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "volume.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 9), np.uint16), photometric="minisblack",
                     metadata={"axes": "ZYX"})
    with pytest.raises(DataError) as error:
        read_native(path, 1)
    line = single_error_line(error)
    assert str(path) in line and "one image per file" in line


# --- PNG -----------------------------------------------------------------------------------


def test_a_16_bit_rgb_png_keeps_more_than_256_levels_per_channel(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 65536, (40, 40, 3)).astype(np.uint16)
    path = write(tmp_path / "rgb16.png", image)
    read = read_native(path, 3)
    assert read.dtype == np.uint16 and np.array_equal(read, image)
    for band in range(3):
        assert len(np.unique(read[:, :, band])) > 256
    # The old path (Pillow) kept the high byte only: at most 256 levels.
    old = read_image(path, 3)
    assert old.dtype == np.uint8 and len(np.unique(old[:, :, 0])) <= 256


def test_a_16_bit_gray_png_from_pillow_keeps_its_values(tmp_path: Path) -> None:
    image = np.random.default_rng(6).integers(0, 65536, (12, 10)).astype(np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(image).save(path)  # Pillow's I;16 mode
    with Image.open(path) as opened:
        assert opened.mode == "I;16"
    read = read_native(path, 1)
    assert read.dtype == np.uint16 and np.array_equal(read[:, :, 0], image)


def test_pillows_16_bit_gray_mode_is_kept_not_reduced(tmp_path: Path) -> None:
    # What Pillow decodes in mode I;16 keeps its 16 bits (here a 16-bit PNG handed to the
    # Pillow branch directly: decode_image gives 16-bit PNGs to OpenCV).
    from imtrans.data import native_images

    image = np.arange(300 * 4, dtype=np.uint16).reshape(30, 40) * 50
    buffer = tmp_path / "gray16.png"
    Image.fromarray(image).save(buffer)
    decoded = native_images._read_pillow(buffer.read_bytes(), buffer)
    assert isinstance(decoded, np.ndarray) and decoded.dtype == np.uint16
    assert np.array_equal(decoded[:, :, 0], image)


@pytest.mark.parametrize(("colour_type", "bands"), [(0, 1), (4, 2), (2, 3), (6, 4)])
def test_every_16_bit_png_colour_type_keeps_its_bands(tmp_path: Path, colour_type: int,
                                                      bands: int) -> None:
    image = random_image("uint16", bands, seed=7)
    path = tmp_path / "hand.png"
    path.write_bytes(png16(image, colour_type))
    decoded = decode_image(path)
    assert isinstance(decoded, np.ndarray) and decoded.shape == image.shape
    assert np.array_equal(decoded, image)


def test_a_16_bit_gray_alpha_png_reads_as_gray(tmp_path: Path) -> None:
    image = random_image("uint16", 2, seed=8)
    path = tmp_path / "la16.png"
    path.write_bytes(png16(image, 4))
    assert np.array_equal(read_native(path, 1), image[:, :, :1])
    assert np.array_equal(read_native(path, 3), np.repeat(image[:, :, :1], 3, axis=2))


# --- DICOM ---------------------------------------------------------------------------------


def test_dicom_gives_int16_hounsfield_units_with_the_rescale_applied() -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_rescale

    path = get_testdata_file("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    assert float(dataset.RescaleIntercept) != 0  # the rescale is not the identity
    read = read_native(path, 1)
    expected = apply_rescale(dataset.pixel_array, dataset)
    assert read.dtype == np.int16 and read.shape == (*expected.shape, 1)
    assert np.array_equal(read[:, :, 0], expected)
    assert read.min() < 0  # air and fat in HU, below the stored values' 0


def test_dicom_without_its_extension_is_found_by_its_marker(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    source = Path(get_testdata_file("CT_small.dcm"))
    renamed = tmp_path / "slice"
    renamed.write_bytes(source.read_bytes())
    assert np.array_equal(read_native(renamed, 1), read_native(source, 1))


def test_dicom_without_pydicom_names_the_extra_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pydicom(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pydicom" or name.startswith("pydicom."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydicom)
    path = tmp_path / "slice.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    with pytest.raises(DataError) as error:
        read_native(path, 1)
    line = single_error_line(error)
    assert str(path) in line and "pip install 'imtrans[dicom]'" in line


# --- band counts and the 8-bit path --------------------------------------------------------


def test_a_6_band_file_read_as_3_channels_is_refused_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "six.tif", random_image("float32", 6))
    with pytest.raises(DataError) as error:
        read_native(path, 3)
    line = single_error_line(error)
    assert str(path) in line and "6 bands" in line and "3 channels" in line


@pytest.mark.parametrize("channels", (1, 3, 4, 6))
@pytest.mark.parametrize(("name", "mode"), [
    ("rgb.jpg", "RGB"), ("gray.jpg", "L"), ("rgb.png", "RGB"), ("rgba.png", "RGBA"),
    ("gray.png", "L"), ("palette.png", "P"), ("rgb.tif", "RGB"), ("gray.tif", "L"),
    ("palette.tif", "P"), ("cmyk.tif", "CMYK"), ("rgba.tif", "RGBA")])
def test_8_bit_files_give_exactly_the_old_array(tmp_path: Path, name: str, mode: str,
                                                 channels: int) -> None:
    rng = np.random.default_rng(9)
    bands = {"RGB": 3, "RGBA": 4, "L": 1, "P": 1, "CMYK": 3}[mode]
    pixels = rng.integers(0, 256, (13, 17, bands)).astype(np.uint8)
    picture = Image.fromarray(pixels[:, :, 0] if bands == 1 else pixels)
    if mode == "P":  # an "L" image given a palette becomes a "P" image
        picture.putpalette(rng.integers(0, 256, 768).tolist())
    if mode == "CMYK":
        picture = picture.convert("CMYK")
    assert picture.mode == mode
    path = tmp_path / name
    picture.save(path)
    read = read_native(path, channels)
    old = read_image(path, channels)
    assert read.dtype == np.uint8 and old.dtype == np.uint8
    assert np.array_equal(read, old)
