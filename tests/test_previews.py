"""Sample grid previews: bands and windows from ``[log]``, any band count, 8-bit grids as before."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner
from conftest import ROOT, cli_error, train_tiny
from PIL import Image
from torch import Tensor

from imtrans.cli import cli
from imtrans.data.display import display_tensor
from imtrans.data.value_range import DomainValues, ValueRange
from imtrans.training.sample_grid import GridPreview, label_columns, save_grid

SIZE = 32
BAND_SCALE = np.arange(1, 7, dtype=np.float32)  # band i holds values in [0, i + 1)


def _old_save_grid(columns: dict[str, Tensor] | list[Tensor], path: Path) -> None:
    """The grids before previews (torchvision's save_image of the first 3 channels, 1 channel
    as gray, 2 as c0 c1 c0), to check that 8-bit grids keep their bytes."""
    from torchvision.utils import save_image

    def as_rgb(images: Tensor) -> Tensor:
        if images.shape[1] == 1:
            return images.expand(-1, 3, -1, -1)
        if images.shape[1] == 2:
            return torch.cat([images, images[:, :1]], 1)
        return images[:, :3]

    shown = [as_rgb(c.detach().float().cpu()) for c in label_columns(columns).values()]
    rows = torch.stack(shown, dim=1).flatten(0, 1)
    save_image((rows + 1) / 2, path, nrow=len(shown), padding=2, format="png")


def _panel(grid: np.ndarray, row: int, column: int, size: int = SIZE) -> np.ndarray:
    top, left = 2 + row * (size + 2), 2 + column * (size + 2)
    return grid[top:top + size, left:left + size]


def _grid(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# --- 8-bit grids keep their bytes ----------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_8bit_grid_bytes_are_those_of_the_old_rendering(tmp_path: Path, channels: int) -> None:
    torch.manual_seed(0)
    levels = (torch.arange(256.0) / 127.5 - 1).reshape(1, 1, 16, 16).expand(2, channels, 16, 16)
    columns = {"real A": levels.clone(), "fake B": torch.tanh(torch.randn(2, channels, 16, 16)),
               "real B": torch.randn(2, channels, 16, 16) * 1.5}  # past [-1, 1]: clipped
    eight_bit = {"A": DomainValues(ValueRange(0, 255), "uint8", channels),
                 "B": DomainValues(ValueRange(0, 255), "uint8", channels)}
    save_grid(columns, tmp_path / "new.png")
    save_grid(columns, tmp_path / "auto.png", GridPreview(values=eight_bit))
    save_grid(list(columns.values())[:1], tmp_path / "one.png")  # a lone column
    _old_save_grid(columns, tmp_path / "old.png")
    _old_save_grid(list(columns.values())[:1], tmp_path / "old_one.png")

    old = (tmp_path / "old.png").read_bytes()
    assert (tmp_path / "new.png").read_bytes() == old
    assert (tmp_path / "auto.png").read_bytes() == old
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "old_one.png").read_bytes()


def test_8bit_run_writes_the_grids_it_always_wrote(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import imtrans.training.jobs.samples as samples_job

    written: list[Path] = []

    def both(columns: dict[str, Tensor], path: Path, preview: GridPreview | None = None) -> None:
        save_grid(columns, path, preview)
        _old_save_grid(columns, path.with_suffix(".old.png"))
        written.append(path)

    monkeypatch.setattr(samples_job, "save_grid", both)
    train_tiny(tmp_path, "pix2pix_edges2shoes", steps=2)
    assert written
    for path in written:
        assert path.read_bytes() == path.with_suffix(".old.png").read_bytes()


# --- N bands, chosen bands, windows ---------------------------------------------------------


def _six_band_dataset(root: Path) -> list[np.ndarray]:
    """A 6-band float32 -> 1-band paired TIFF dataset; returns the A images."""
    rng = np.random.default_rng(0)
    images = []
    for side in ("trainA", "trainB", "testA", "testB"):
        (root / side).mkdir(parents=True)
    for i in range(4):
        a = rng.random((SIZE, SIZE, 6), dtype=np.float32) * BAND_SCALE
        images.append(a)
        for split in ("train", "test"):
            tifffile.imwrite(root / f"{split}A" / f"{i}.tif", a, photometric="minisblack",
                             planarconfig="contig")
            tifffile.imwrite(root / f"{split}B" / f"{i}.tif", a[:, :, 3:4] * 0.5,
                             photometric="minisblack")
    return images


def test_six_band_run_shows_the_chosen_bands(tmp_path: Path) -> None:
    images = _six_band_dataset(tmp_path / "data")
    run_dir = train_tiny(
        tmp_path, "pix2pix_ct_denoise", steps=2, data__root=str(tmp_path / "data"),
        data__in_channels=6, data__value_range=[0, 6], data__crop_size=SIZE,
        data__flip=False, generator__num_downs=5, log__preview_bands=[3, 2, 1])

    grid = _grid(run_dir / "samples" / "step_00000002.png")
    assert grid.shape == (4 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2, 3)  # 4 rows, 3 columns

    # float data: "auto" is the percentile window, in bands 3, 2, 1 as red, green, blue.
    def shown(image: np.ndarray, bands: list[int] | None) -> np.ndarray:
        tensor = torch.from_numpy(ValueRange(0, 6).normalize(image.transpose(2, 0, 1)))
        return display_tensor(tensor, bands=bands, window="percentile")

    chosen = [shown(image, [3, 2, 1]) for image in images]
    default = [shown(image, None) for image in images]
    for row in range(4):
        panel = _panel(grid, row, 0)
        assert any(np.array_equal(panel, expected) for expected in chosen), row
        assert not any(np.array_equal(panel, expected) for expected in default), row
        # Band 3 (values to 4) is red, brighter on average than band 1 (values to 2) in blue.
        assert panel[..., 0].mean() > panel[..., 2].mean() + 20
        for column in (1, 2):  # the 1-band output and target lack band 3: gray, no error
            gray = _panel(grid, row, column)
            assert np.array_equal(gray[..., 0], gray[..., 1])
            assert np.array_equal(gray[..., 0], gray[..., 2])
            assert gray.min() < 30 and gray.max() > 225  # the percentile window's contrast

    recorded = tomllib.loads((run_dir / "recipe.toml").read_text(encoding="utf-8"))["log"]
    assert (recorded["preview_bands"], recorded["preview_window"]) == ([3, 2, 1], "auto")
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "samples/step_00000002.png" in html


def test_a_fixed_window_is_in_the_domains_own_units() -> None:
    ct = {"A": DomainValues(ValueRange(-1024, 3071), "int16", 1),
          "B": DomainValues(ValueRange(-1024, 3071), "int16", 1)}
    hounsfield = torch.tensor([-1024.0, -160.0, 40.0, 240.0, 3071.0])
    network = (hounsfield + 1024) / 4095 * 2 - 1
    shown = GridPreview(window=(-160, 240), values=ct).render("fake B", network.view(1, 1, 5))
    assert shown[0, :, 0].tolist() == [0, 0, 128, 255, 255]  # soft tissue spread over 0..255
    assert GridPreview(window="range", values=ct).render(
        "real A", network.view(1, 1, 5))[0, :, 0].tolist() == [0, 54, 66, 79, 255]  # x 255/4095


def test_auto_window_is_percentile_for_16_bit_domains_and_the_range_for_8_bit() -> None:
    torch.manual_seed(1)
    narrow = torch.rand(1, 16, 16) * 0.1 - 0.5  # a CT slice's few hundred levels
    values = {"A": DomainValues(ValueRange(0, 255), "uint8", 1),
              "B": DomainValues(ValueRange(0, 65535), "uint16", 1)}
    preview = GridPreview(values=values)
    assert np.array_equal(preview.render("fake B", narrow),
                          display_tensor(narrow, window="percentile"))
    assert np.array_equal(preview.render("real A", narrow), display_tensor(narrow))
    # A column no domain can be told for: percentile, since one domain is not 8-bit.
    assert np.array_equal(preview.render("column 3", narrow),
                          display_tensor(narrow, window="percentile"))
    assert np.array_equal(GridPreview().render("column 3", narrow), display_tensor(narrow))


@pytest.mark.parametrize("channels", [2, 4, 6, 13])
def test_any_band_count_shows_without_error(tmp_path: Path, channels: int) -> None:
    torch.manual_seed(channels)
    images = torch.rand(2, channels, 8, 8) * 2 - 1
    save_grid({"real A": images, "fake B": images[:, :1]}, tmp_path / "grid.png",
              GridPreview(bands=(5, 4, 3)))
    grid = _grid(tmp_path / "grid.png")
    bands = [5, 4, 3] if channels > 5 else None  # else the default: band 0 gray, or 0, 1, 2
    expected = display_tensor(images[1], bands=bands)
    assert np.array_equal(_panel(grid, 1, 0, size=8), expected)


# --- recipe validation ------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "message"), [
    ("log.preview_bands=[1, 2]", "name 1 band (gray) or 3 (red, green, blue); got [1, 2]"),
    ("log.preview_bands=[-1]", "greater than or equal to 0"),
    ("log.preview_window=[240, -160]", "low < high"),
    ("log.preview_window='bright'", "\"auto\", \"percentile\", \"range\" or [low, high]"),
    ("log.preview_window=[0, 1, 2]", "two finite numbers"),
])
def test_validate_refuses_bad_preview_options_in_one_line(setting: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["validate", str(ROOT / "recipes/pix2pix_ct_denoise.toml"),
                                      "--set", setting])
    line = cli_error(result)
    assert message in line and "log.preview_" in line, line


def test_validate_accepts_and_records_preview_options() -> None:
    result = CliRunner().invoke(cli, [
        "validate", str(ROOT / "recipes/pix2pix_ct_denoise.toml"), "--print",
        "--set", "log.preview_bands=[3, 2, 1]", "--set", "log.preview_window=[-160, 240]"])
    assert result.exit_code == 0, result.output
    printed = "".join(result.output.split())
    assert "preview_bands=[3,2,1,]" in printed
    assert "preview_window=[-160.0,240.0,]" in printed
