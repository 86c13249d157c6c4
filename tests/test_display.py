"""Display renderings of any image for previews: data/display.py.

8-bit images show as before; other types through a percentile or fixed window shared by the
shown bands; bands are chosen by number; NaN and constant images never break a preview; a tensor
in [-1, 1] shows as the sample grids and translated files do.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from imtrans.data.display import PERCENTILES, display_rgb, display_tensor
from imtrans.errors import InvalidArgumentError
from imtrans.inference.translator import to_uint8

ROOT = Path(__file__).resolve().parents[1]


def _constant_bands(values: list[float], dtype: str = "float32") -> np.ndarray:
    """A 6 x 5 image whose band ``i`` is ``values[i]`` everywhere."""
    return np.broadcast_to(np.array(values, dtype), (6, 5, len(values))).copy()


@pytest.fixture(autouse=True)
def _no_warnings():
    """A preview must not warn (NaN arithmetic, division by zero, casts of NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("channels", [1, 3])
def test_8_bit_rgb_and_gray_show_their_own_pixels(channels: int) -> None:
    image = np.random.default_rng(channels).integers(0, 256, (9, 11, channels), dtype=np.uint8)
    shown = display_rgb(image)
    assert shown.dtype == np.uint8 and shown.shape == (9, 11, 3)
    np.testing.assert_array_equal(shown, np.broadcast_to(image, (9, 11, 3)))
    shown[:] = 0  # a copy: the caller's image is not changed through it
    assert image.any()


def test_8_bit_rgba_drops_alpha_and_2d_is_gray() -> None:
    image = np.random.default_rng(0).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(display_rgb(image), image[:, :, :3])
    np.testing.assert_array_equal(display_rgb(image[:, :, 0]),
                                  np.repeat(image[:, :, :1], 3, axis=2))


def test_uint16_ramp_spans_0_to_255_through_the_percentile_window() -> None:
    ramp = np.arange(1000, 1000 + 40 * 50 * 7, 7, dtype=np.uint16).reshape(40, 50, 1)
    shown = display_rgb(ramp)[:, :, 0]
    low, high = np.percentile(ramp, PERCENTILES)
    assert shown.min() == 0 and shown.max() == 255
    assert (shown[ramp[:, :, 0] <= low] == 0).all() and (shown[ramp[:, :, 0] >= high] == 255).all()
    assert (np.diff(shown.reshape(-1).astype(int)) >= 0).all()  # the ramp stays a ramp
    # The middle of the window is the middle of 0..255.
    middle = np.argmin(np.abs(ramp.reshape(-1) - (low + high) / 2))
    assert abs(int(shown.reshape(-1)[middle]) - 127.5) <= 1


def test_the_window_is_shared_by_the_shown_bands_and_bands_pick_channels() -> None:
    # Bands 0..5 are 0, 10, ..., 50: bands [3, 2, 1] are 30, 20, 10, so one window 10..30
    # shows them as 255, 128 (127.5 rounded to even) and 0.
    image = _constant_bands([0, 10, 20, 30, 40, 50])
    assert display_rgb(image, bands=[3, 2, 1])[0, 0].tolist() == [255, 128, 0]
    assert display_rgb(image, bands=[1, 2, 3])[0, 0].tolist() == [0, 128, 255]
    assert display_rgb(image)[0, 0].tolist() == [0, 128, 255]  # bands 0, 1, 2 by default


def test_bands_pick_8_bit_channels_exactly() -> None:
    image = _constant_bands([11, 22, 33, 44, 55], "uint8")
    assert display_rgb(image, bands=[4, 0, 2])[2, 3].tolist() == [55, 11, 33]
    assert display_rgb(image, bands=[3])[2, 3].tolist() == [44, 44, 44]
    assert display_rgb(image[:, :, :2])[2, 3].tolist() == [11, 11, 11]  # 2 bands: band 0, gray


@pytest.mark.parametrize(("bands", "words"), [
    ([0, 1, 6], "band 6 does not exist: the image has 6 band"),
    ([-1], "band -1 does not exist: the image has 6 band"),
    ([0, 1], "bands must name 1 band .gray. or 3"),
    ([], "bands must name 1 band"),
    ([0, 1.0, 2], "bands are band numbers"),
    ([True], "bands are band numbers"),
    (3, "bands must name 1 band"),
    ("012", "bands must name 1 band"),
])
def test_bad_bands_are_refused_with_the_band_count(bands: list[int], words: str) -> None:
    with pytest.raises(InvalidArgumentError, match=words):
        display_rgb(_constant_bands([1, 2, 3, 4, 5, 6]), bands=bands)


def test_nan_and_infinities_show_as_0_and_stay_out_of_the_window() -> None:
    image = np.arange(100, dtype=np.float32).reshape(10, 10, 1)
    image[0, 0, 0] = np.nan
    image[0, 1, 0] = np.inf
    image[0, 2, 0] = -np.inf
    shown = display_rgb(image)[:, :, 0]
    assert shown[0, :3].tolist() == [0, 0, 0]
    finite = image[np.isfinite(image)]
    low, high = np.percentile(finite, PERCENTILES)
    expected = np.rint(np.clip((image[:, :, 0] - low) * 255 / (high - low), 0, 255))
    finite_pixels = np.isfinite(image[:, :, 0])
    # Within one level: a value at a half level may round either way in float32.
    assert np.abs(shown[finite_pixels] - expected[finite_pixels]).max() <= 1
    assert shown[finite_pixels].min() == 0 and shown.max() == 255


def test_an_image_without_finite_values_shows_black() -> None:
    image = np.full((4, 4, 3), np.nan, np.float32)
    assert not display_rgb(image).any()


@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32"])
def test_a_constant_image_shows_mid_gray(dtype: str) -> None:
    shown = display_rgb(np.full((5, 5, 1), 7, dtype))
    assert (shown == 128).all()
    assert (display_rgb(np.full((5, 5, 3), 200, np.uint8), window="percentile") == 128).all()


def test_a_mostly_constant_image_shows_what_differs() -> None:
    # Stars on black: the 1st and 99th percentiles are both 0, so the window is min..max.
    sky = np.zeros((20, 20, 1), np.uint16)
    sky[3, 4, 0], sky[10, 10, 0] = 1000, 500
    shown = display_rgb(sky)[:, :, 0]
    assert shown[3, 4] == 255 and shown[10, 10] == 128 and shown[0, 0] == 0


def test_a_fixed_window_is_in_native_units() -> None:
    # Soft tissue in Hounsfield units: -160..240 maps to 0..255.
    ct = np.array([[-1024, -160, 0, 80, 240, 3071]], np.int16)
    assert display_rgb(ct, window=(-160, 240))[0, :, 0].tolist() == [0, 0, 102, 153, 255, 255]
    for same in ([-160.0, 240.0], np.array([-160, 240]), (np.float32(-160), np.int16(240))):
        assert display_rgb(ct, window=same)[0, :, 0].tolist() == [0, 0, 102, 153, 255, 255]


def test_a_window_applies_to_8_bit_images_when_given() -> None:
    image = np.array([[[100], [125], [150], [200]]], np.uint8)
    assert display_rgb(image, window=(100, 150))[0, :, 0].tolist() == [0, 128, 255, 255]
    forced = display_rgb(np.arange(100, 151, dtype=np.uint8).reshape(1, 51, 1),
                         window="percentile")[0, :, 0]
    assert forced[0] == 0 and forced[-1] == 255


@pytest.mark.parametrize("window", [(5, 5), (6, 5), (0, np.nan), (0, 1, 2), "auto", (0, "1"),
                                    (False, True), 5, np.array([3.0, 1.0])])
def test_bad_windows_are_refused(window: object) -> None:
    with pytest.raises(InvalidArgumentError, match="window"):
        display_rgb(_constant_bands([1.0]), window=window)  # type: ignore[arg-type]


@pytest.mark.parametrize("image", [np.zeros(5, np.uint8), np.zeros((2, 3, 4, 5), np.uint8),
                                   np.zeros((3, 4, 0), np.uint8), np.zeros((3, 4, 1), bool),
                                   np.zeros((3, 4, 1), np.complex64)])
def test_bad_arrays_are_refused(image: np.ndarray) -> None:
    with pytest.raises(InvalidArgumentError, match="cannot show an image of"):
        display_rgb(image)


def test_a_6_band_float_image_renders() -> None:
    rng = np.random.default_rng(6)
    image = (rng.standard_normal((16, 16, 6)) * 500).astype(np.float32)
    shown = display_rgb(image)
    assert shown.shape == (16, 16, 3) and shown.dtype == np.uint8
    assert shown.min() == 0 and shown.max() == 255
    # Bands 3, 4, 5 show other pixels than the default 0, 1, 2.
    assert not np.array_equal(display_rgb(image, bands=[3, 4, 5]), shown)


def test_a_large_image_window_is_estimated_on_a_sample() -> None:
    # 1.2 M pixels: the window comes from every 2nd value and is the exact one within a level.
    ramp = np.arange(1200 * 1000, dtype=np.float32).reshape(1200, 1000, 1)
    shown = display_rgb(ramp)[:, :, 0].reshape(-1)
    low, high = np.percentile(ramp, PERCENTILES)
    exact = np.rint(np.clip((ramp.reshape(-1) - low) * 255 / (high - low), 0, 255))
    assert np.abs(shown.astype(int) - exact).max() <= 1


@pytest.mark.parametrize("channels", [1, 3])
def test_display_tensor_shows_the_pixels_of_to_uint8(channels: int) -> None:
    tensor = torch.randn(channels, 9, 13, generator=torch.Generator().manual_seed(channels))
    tensor[0, 0, :3] = torch.tensor([-1.0, 1.0, 2 / 255 - 1])  # the ends and a rounding case
    expected = to_uint8(tensor).permute(1, 2, 0).numpy()
    shown = display_tensor(tensor)
    assert shown.shape == (9, 13, 3) and shown.dtype == np.uint8
    np.testing.assert_array_equal(shown, np.broadcast_to(expected, (9, 13, 3)))


def test_display_tensor_of_many_channels_follows_the_band_rule() -> None:
    tensor = torch.linspace(-1, 1, 16)[:, None, None].expand(16, 4, 5).clone()
    levels = to_uint8(tensor)[:, 0, 0].tolist()
    assert display_tensor(tensor)[1, 1].tolist() == levels[:3]
    assert display_tensor(tensor, bands=[15, 8, 0])[1, 1].tolist() == [levels[15], levels[8],
                                                                        levels[0]]
    # A window is in network units: the shown bands' own range fills 0..255 (the middle band
    # lies half way, 127.5 give or take float32's rounding).
    red, green, blue = display_tensor(tensor, bands=[3, 2, 1], window="percentile")[1, 1]
    assert (red, blue) == (255, 0) and green in (127, 128)
    assert display_tensor(tensor, bands=[0], window=(-1, 0))[1, 1].tolist() == [0, 0, 0]


def test_display_tensor_shows_nan_as_0_and_refuses_batches() -> None:
    tensor = torch.zeros(3, 2, 2)
    tensor[1, 0, 0] = float("nan")
    assert display_tensor(tensor)[0, 0].tolist() == [128, 0, 128]
    with pytest.raises(InvalidArgumentError, match="expected C x H x W"):
        display_tensor(torch.zeros(1, 3, 2, 2))
    with pytest.raises(InvalidArgumentError, match="band 3 does not exist"):
        display_tensor(tensor, bands=[3])


def test_the_data_modules_for_images_do_not_import_torch() -> None:
    # Loaded by path: the package imtrans.data imports torch for its datasets, these two
    # modules must not (light commands render previews and write files with them).
    code = (
        "import importlib.util, sys\n"
        "for name in ('display', 'image_writing'):\n"
        "    spec = importlib.util.spec_from_file_location(\n"
        "        name, 'imtrans/data/' + name + '.py')\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"
