"""Image arrays as file bytes in their own type: data/image_writing.py.

Every type and band count goes through :func:`encode_image` in its default format and comes back
exactly through an independent decoder (tifffile, OpenCV, Pillow); 8-bit PNGs are Pillow's bytes,
as before; what a format cannot hold is refused with one line naming the format that can.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from imtrans.data.image_writing import (
    IMAGE_OUTPUT_FORMATS,
    MAX_TIFF_BANDS,
    convert_dtype,
    default_output_format,
    encode_image,
)
from imtrans.errors import InvalidArgumentError

DTYPES = ("uint8", "uint16", "int16", "float32")
BAND_COUNTS = (1, 3, 4, 6, 16)


def _random_image(dtype: str, bands: int, seed: int = 0, size: tuple[int, int] = (19, 23),
                  ) -> np.ndarray:
    """Values over the whole range of ``dtype`` (floats: negative, fractional and large)."""
    rng = np.random.default_rng(seed)
    shape = (*size, bands)
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 1000.0).astype(dtype)
    limits = np.iinfo(dtype)
    return rng.integers(limits.min, limits.max, size=shape, endpoint=True, dtype=dtype)


def _decode(data: bytes, suffix: str) -> np.ndarray:
    """``data`` decoded as ``H x W x C`` by a decoder that is not the encoder's."""
    if suffix in (".tif", ".tiff"):
        array = tifffile.imread(io.BytesIO(data))
    elif suffix == ".png" and _png_header(data)[0] == 16:  # Pillow would keep 8 bits of RGB
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if array.ndim == 3:  # OpenCV gives BGR(A)
            array = array[:, :, [2, 1, 0, 3][:array.shape[2]]]
    else:
        array = np.asarray(Image.open(io.BytesIO(data)))
    return array[:, :, None] if array.ndim == 2 else array


def _png_header(data: bytes) -> tuple[int, int]:
    """The bit depth and colour type of a PNG (IHDR: 8-byte signature, length, type, sides)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return data[24], data[25]


@pytest.mark.parametrize("bands", BAND_COUNTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_type_and_band_count_round_trips_exactly_in_its_default_format(
        dtype: str, bands: int) -> None:
    image = _random_image(dtype, bands)
    suffix = default_output_format(dtype, bands)
    decoded = _decode(encode_image(image, suffix), suffix)
    assert decoded.dtype == image.dtype
    assert decoded.shape == image.shape
    np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize(("dtype", "bands", "suffix"), [
    ("uint8", 1, ".png"), ("uint8", 3, ".png"), ("uint8", 4, ".png"), ("uint16", 1, ".png"),
    ("uint16", 3, ".png"), ("uint16", 4, ".png"), ("uint8", 2, ".tif"), ("uint8", 5, ".tif"),
    ("uint16", 2, ".tif"), ("uint16", 6, ".tif"), ("int16", 1, ".tif"), ("int16", 3, ".tif"),
    ("float32", 1, ".tif"), ("float32", 3, ".tif"), ("int32", 1, ".tif"),
    ("float64", 4, ".tif"),
])
def test_default_output_format(dtype: str, bands: int, suffix: str) -> None:
    assert default_output_format(dtype, bands) == suffix
    assert default_output_format(np.dtype(dtype), bands) == suffix


@pytest.mark.parametrize("bands", [1, 3, 4])
def test_16_bit_png_keeps_16_bits_in_rgb_order(bands: int) -> None:
    # A ramp over all 65,536 levels, and each band offset, so the bands differ everywhere.
    ramp = np.arange(256 * 256, dtype=np.uint32).reshape(256, 256)
    image = np.stack([(ramp + 9973 * b) % 65536 for b in range(bands)], axis=2).astype(np.uint16)
    data = encode_image(image, ".png")
    depth, colour_type = _png_header(data)
    assert depth == 16
    assert colour_type == {1: 0, 3: 2, 4: 6}[bands]  # gray, RGB, RGBA
    decoded = _decode(data, ".png")
    np.testing.assert_array_equal(decoded, image)
    assert len(np.unique(decoded)) > 256


def test_16_bit_png_bands_are_red_green_blue_alpha_for_other_readers() -> None:
    # Pillow reads a 16-bit RGB(A) PNG as 8 bits (the high byte): enough to see the order, and
    # independent of OpenCV's swap, which a swap on both sides would hide.
    image = np.empty((4, 5, 4), np.uint16)
    for band, value in enumerate((0x1000, 0x8000, 0xF000, 0x4000)):
        image[:, :, band] = value
    decoded = np.asarray(Image.open(io.BytesIO(encode_image(image, ".png"))))
    assert decoded[0, 0].tolist() == [0x10, 0x80, 0xF0, 0x40]


@pytest.mark.parametrize("bands", [1, 3, 4])
def test_8_bit_png_bytes_are_pillows_as_before(bands: int) -> None:
    image = _random_image("uint8", bands, seed=bands)
    expected = io.BytesIO()
    Image.fromarray(image[:, :, 0] if bands == 1 else image).save(expected, format="PNG")
    assert encode_image(image, ".png") == expected.getvalue()
    _, colour_type = _png_header(expected.getvalue())
    assert _png_header(encode_image(image, ".png")) == (8, colour_type)


def test_a_2d_array_is_one_channel() -> None:
    image = _random_image("uint16", 1)
    assert encode_image(image[:, :, 0], ".png") == encode_image(image, ".png")
    assert encode_image(image[:, :, 0], ".tif") == encode_image(image, ".tif")


@pytest.mark.parametrize("suffix", [".bmp", ".png", ".tif", ".tiff"])
def test_8_bit_rgb_in_lossless_formats_round_trips(suffix: str) -> None:
    image = _random_image("uint8", 3)
    np.testing.assert_array_equal(_decode(encode_image(image, suffix), suffix), image)


@pytest.mark.parametrize(("suffix", "pillow_format"), [(".webp", "WEBP"), (".bmp", "BMP")])
def test_other_8_bit_formats_are_pillows_bytes(suffix: str, pillow_format: str) -> None:
    image = _random_image("uint8", 3)
    expected = io.BytesIO()
    Image.fromarray(image).save(expected, format=pillow_format)
    assert encode_image(image, suffix) == expected.getvalue()


def test_jpeg_drops_alpha_as_translate_always_did() -> None:
    image = _random_image("uint8", 4)
    expected = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image[:, :, :3])).save(expected, format="JPEG")
    assert encode_image(image, ".jpg") == expected.getvalue()
    assert encode_image(image, ".JPEG") == expected.getvalue()


@pytest.mark.parametrize(("dtype", "bands", "photometric", "alpha"), [
    ("uint8", 3, tifffile.PHOTOMETRIC.RGB, False), ("uint16", 3, tifffile.PHOTOMETRIC.RGB, False),
    ("uint8", 4, tifffile.PHOTOMETRIC.RGB, True), ("uint16", 4, tifffile.PHOTOMETRIC.RGB, True),
    ("uint8", 1, tifffile.PHOTOMETRIC.MINISBLACK, False),
    ("int16", 3, tifffile.PHOTOMETRIC.MINISBLACK, False),
    ("float32", 3, tifffile.PHOTOMETRIC.MINISBLACK, False),
    ("uint16", 6, tifffile.PHOTOMETRIC.MINISBLACK, False),
])
def test_tiff_tags(dtype: str, bands: int, photometric: int, alpha: bool) -> None:
    data = encode_image(_random_image(dtype, bands), ".tif")
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        assert len(tiff.pages) == 1
        page = tiff.pages[0]
        assert page.photometric == photometric
        assert page.samplesperpixel == bands
        assert page.planarconfig == tifffile.PLANARCONFIG.CONTIG
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE  # zlib
        assert (tifffile.EXTRASAMPLE.UNASSALPHA in page.extrasamples) == alpha


def test_8_bit_rgba_tiff_opens_in_pillow_with_its_alpha() -> None:
    image = _random_image("uint8", 4)
    opened = Image.open(io.BytesIO(encode_image(image, ".tiff")))
    assert opened.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(opened), image)


@pytest.mark.parametrize(("dtype", "bands"), [("int32", 2), ("float64", 5), ("uint16", 64)])
def test_wider_types_and_many_bands_round_trip_as_tiff(dtype: str, bands: int) -> None:
    image = _random_image(dtype, bands, size=(5, 7))
    np.testing.assert_array_equal(_decode(encode_image(image, ".tif"), ".tif"), image)


@pytest.mark.parametrize(("dtype", "bands", "suffix", "suggestion"), [
    ("float32", 1, ".png", "write .tif instead"),
    ("int16", 1, ".png", "write .tif instead"),
    ("uint8", 6, ".png", "write .tif instead"),
    ("uint8", 2, ".png", "write .tif instead"),
    ("uint16", 6, ".png", "write .tif instead"),
    ("int16", 1, ".jpg", "write .tif instead"),
    ("uint16", 3, ".jpg", "write .png or .tif instead"),
    ("uint16", 1, ".webp", "write .png or .tif instead"),
    ("float32", 3, ".bmp", "write .tif instead"),
    ("uint8", 5, ".jpeg", "write .tif instead"),
])
def test_what_a_format_cannot_hold_is_refused_naming_the_one_that_can(
        dtype: str, bands: int, suffix: str, suggestion: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        encode_image(_random_image(dtype, bands), suffix)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{suffix} cannot hold ")
    assert message.endswith(suggestion)
    held_type = dtype == "uint8" or (dtype, suffix) == ("uint16", ".png")
    assert (f"{bands} channels" if held_type else f"{dtype} images") in message


@pytest.mark.parametrize(("image", "suffix", "words"), [
    (np.zeros(5, np.uint8), ".png", "shape (5,)"),
    (np.zeros((2, 3, 4, 5), np.uint8), ".tif", "shape (2, 3, 4, 5)"),
    (np.zeros((3, 4, 0), np.uint8), ".tif", "shape (3, 4, 0)"),
    (np.zeros((3, 4, 1), np.uint8), ".gif", "expected one of .png, .tif"),
    (np.zeros((3, 4, 1), np.float16), ".tif", ".tif cannot hold float16"),
    (np.zeros((3, 4, MAX_TIFF_BANDS + 1), np.uint8), ".tif", f"at most {MAX_TIFF_BANDS}"),
])
def test_bad_arrays_and_formats_are_refused(image: np.ndarray, suffix: str, words: str) -> None:
    with pytest.raises(InvalidArgumentError, match=words.replace("(", r"\(").replace(")", r"\)")
                       ) as caught:
        encode_image(image, suffix)
    assert "\n" not in str(caught.value)


def test_suffix_case_and_dot_do_not_matter() -> None:
    image = _random_image("uint8", 3)
    assert encode_image(image, "PNG") == encode_image(image, ".Png") == encode_image(image, ".png")
    assert set(IMAGE_OUTPUT_FORMATS) >= {".png", ".tif", ".tiff", ".jpg", ".jpeg"}


@pytest.mark.parametrize(("dtype", "expected"), [
    ("uint8", [0, 0, 2, 2, 4, 255, 255, 0, 255, 0]),
    ("uint16", [0, 0, 2, 2, 4, 300, 65535, 0, 65535, 0]),
    ("int16", [-3, 0, 2, 2, 4, 300, 32767, 0, 32767, -32768]),
])
def test_convert_dtype_rounds_clips_and_zeroes_nan(dtype: str, expected: list[int]) -> None:
    values = np.array([-3.2, 0.4, 1.5, 2.5, 3.6, 300.0, 1e6, np.nan, np.inf, -np.inf],
                      np.float32)
    converted = convert_dtype(values, dtype)
    assert converted.dtype == np.dtype(dtype)
    if dtype != "int16":  # the unsigned types clip negatives to 0
        expected[0] = 0
    assert converted.tolist() == expected


def test_convert_dtype_reaches_the_ends_of_32_bit_integers() -> None:
    converted = convert_dtype(np.array([-1e12, -2147483648.0, 2147483647.0, 1e12]), "int32")
    assert converted.tolist() == [-2147483648, -2147483648, 2147483647, 2147483647]


def test_convert_dtype_to_float_is_a_plain_cast() -> None:
    values = np.array([-1024.25, np.nan, 1e6], np.float64)
    converted = convert_dtype(values, np.float32)
    assert converted.dtype == np.float32
    np.testing.assert_array_equal(converted, values.astype(np.float32))


@pytest.mark.parametrize("dtype", ["int64", "bool", "complex64"])
def test_convert_dtype_refuses_types_images_are_not_written_in(dtype: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"cannot convert images to {dtype}"):
        convert_dtype(np.zeros(3, np.float32), dtype)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_native_float_images_convert_and_round_trip_exactly(dtype: str) -> None:
    # What translate does: network output mapped to native units (floats near integers),
    # converted, encoded in the default format and read back.
    image = _random_image(dtype, 3)
    native = image.astype(np.float32) + np.float32(0.3)
    suffix = default_output_format(dtype, 3)
    decoded = _decode(encode_image(convert_dtype(native, dtype), suffix), suffix)
    np.testing.assert_array_equal(decoded, image)
