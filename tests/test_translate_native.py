"""`imtrans translate` and the Python API in native units: 16-bit, float and CT (int16 HU)
inputs give outputs of the target domain's type and units; --dtype and --format override it;
8-bit runs write exactly the files they always wrote."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner, Result
from conftest import error_line, train_tiny
from PIL import Image

from imtrans.cli import cli
from imtrans.data.image_writing import convert_dtype, encode_image
from imtrans.data.native_images import read_native
from imtrans.errors import InvalidArgumentError
from imtrans.inference import load_translator
from imtrans.samples import sample_root

pytestmark = pytest.mark.usefixtures("builtins_only")


def _smooth(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random image in [0, 1] with some noise: many distinct levels."""
    y, x = np.mgrid[0:height, 0:width] / 16.0
    phase = rng.uniform(0, 6, 4)
    image = (np.sin(x + phase[0]) * np.cos(y + phase[1]) + np.sin(0.5 * x * phase[2] + y)) / 4
    return np.clip(image + 0.5 + rng.normal(0, 0.02, image.shape), 0, 1)[:, :, None]


def _paired_folder(root: Path, dtype: str, suffix: str, scale: float) -> Path:
    """root/trainA (noisy) and root/trainB (clean): 4 pairs of 64 x 64 one-band images."""
    rng = np.random.default_rng(1)
    for side in "AB":
        (root / f"train{side}").mkdir(parents=True)
    for i in range(4):
        clean = _smooth(rng, 64, 64)
        noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1)
        for side, image in (("A", noisy), ("B", clean)):
            values = (image * scale).astype(dtype)
            (root / f"train{side}" / f"p{i}{suffix}").write_bytes(encode_image(values, suffix))
    return root


def _run(tmp_path_factory: pytest.TempPathFactory, name: str, **overrides: object) -> Path:
    # Sample grids are left out (sample_every beyond the run): this file tests translate.
    return train_tiny(tmp_path_factory.mktemp(name), "pix2pix_ct_denoise", steps=2,
                      train__sample_every=1000, **overrides)


@pytest.fixture(scope="module")
def u16_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pix2pix on 16-bit PNG pairs, value range 0..65535."""
    data = _paired_folder(tmp_path_factory.mktemp("u16data"), "uint16", ".png", 60000)
    return _run(tmp_path_factory, "u16", data__root=str(data), data__value_range="dtype")


@pytest.fixture(scope="module")
def float_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pix2pix on float32 TIFF pairs, value range 0..1."""
    data = _paired_folder(tmp_path_factory.mktemp("f32data"), "float32", ".tif", 1.0)
    return _run(tmp_path_factory, "f32", data__root=str(data), data__value_range="dtype")


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CT recipe on its bundled sample (int16 TIFF in HU, range [-1024, 3071])."""
    return _run(tmp_path_factory, "ct", data__root=str(sample_root("ct_denoise")))


def _translate(*args: object) -> Result:
    return CliRunner().invoke(cli, ["translate", *map(str, args), "--device", "cpu",
                                    "--workers", "0"])


def _inputs(folder: Path, dtype: str, suffix: str, scale: float, count: int = 2) -> list[Path]:
    """Images of 70 x 50 (not multiples of the U-Net's 64: padded and cropped back)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(count):
        path = folder / f"in{i}{suffix}"
        path.write_bytes(encode_image((_smooth(rng, 50, 70) * scale).astype(dtype), suffix))
        paths.append(path)
    return paths


def _expected(run: Path, source: Path, dtype: str) -> np.ndarray:
    """What the Python API gives for one input, in ``dtype``."""
    translator = load_translator(run, device="cpu")
    return convert_dtype(translator.translate_array(
        read_native(source, translator.in_channels)), dtype)


def test_the_commands_choices_are_the_librarys() -> None:
    from imtrans.cli import translate
    from imtrans.inference.output_types import DTYPE_CHOICES, FORMAT_CHOICES

    assert translate._DTYPES == DTYPE_CHOICES and translate._FORMATS == FORMAT_CHOICES


def test_sixteen_bit_inputs_give_sixteen_bit_outputs(u16_run: Path, tmp_path: Path) -> None:
    sources = _inputs(tmp_path / "in", "uint16", ".png", 60000)
    result = _translate(u16_run, tmp_path / "in", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "outputs: uint16, the target domain's type, in its units (range 0..65535)" \
        in result.output
    for source in sources:
        written = tmp_path / "out" / source.name
        header = written.read_bytes()[:26]
        assert header[24] == 16 and header[25] == 0  # a 16-bit gray PNG
        values = read_native(written, 1)
        assert values.dtype == np.uint16 and values.shape == (50, 70, 1)
        assert len(np.unique(values)) > 256  # not 8 bits in a 16-bit file
        expected = _expected(u16_run, source, "uint16").astype(np.int64)
        assert np.abs(values.astype(np.int64) - expected).max() <= 1


def test_float_inputs_give_float32_tiff_outputs(float_run: Path, tmp_path: Path) -> None:
    sources = _inputs(tmp_path / "in", "float32", ".tif", 1.0)
    result = _translate(float_run, tmp_path / "in", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "outputs: float32, the target domain's type, in its units (range 0..1)" \
        in result.output
    for source in sources:
        written = tmp_path / "out" / source.name
        with tifffile.TiffFile(written) as tiff:
            assert tiff.pages[0].dtype == np.float32
        values = tifffile.imread(written)
        assert values.shape == (50, 70) and values.min() >= 0 and values.max() <= 1
        assert len(np.unique(values)) > 256
        np.testing.assert_allclose(values[:, :, None], _expected(float_run, source, "float32"),
                                   atol=1e-5)


def test_the_ct_sample_translates_to_int16_tiffs_in_hounsfield_units(
        ct_run: Path, tmp_path: Path) -> None:
    test_a = sample_root("ct_denoise") / "testA"
    result = _translate(ct_run, test_a, tmp_path / "out")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1] == "outputs: int16, the target domain's type, in its units (range " \
                       "-1024..3071)", lines
    assert lines[-1] == f"wrote 16 image(s) to {tmp_path / 'out'}"
    names = sorted(p.name for p in test_a.iterdir())
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tif")) == names
    first = tmp_path / "out" / names[0]
    values = tifffile.imread(first)
    assert values.dtype == np.int16 and values.shape == (64, 64)
    assert values.min() >= -1024 and values.max() <= 3071
    expected = _expected(ct_run, test_a / names[0], "int16")[:, :, 0].astype(np.int64)
    assert np.abs(values.astype(np.int64) - expected).max() <= 1


def test_dtype_and_format_override_the_target_domains_type(ct_run: Path, u16_run: Path,
                                                            tmp_path: Path) -> None:
    pattern = str(sample_root("ct_denoise") / "testA" / "ctsmall_r00_c0[01].tif")
    result = _translate(ct_run, pattern, tmp_path / "f32", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert "outputs: float32 (the target domain's is int16), in its units" in result.output
    hu = tifffile.imread(tmp_path / "f32" / "ctsmall_r00_c00.tif")
    assert hu.dtype == np.float32 and len(np.unique(hu)) > 256
    assert not np.array_equal(hu, np.round(hu))  # not rounded to whole HU

    result = _translate(ct_run, pattern, tmp_path / "u8", "--dtype", "uint8", "--format", "png")
    assert result.exit_code == 0, result.output
    assert "the target range -1024..3071 mapped onto 0..255" in result.output
    shown = np.asarray(Image.open(tmp_path / "u8" / "ctsmall_r00_c00.png"))
    assert shown.dtype == np.uint8
    assert np.abs(shown - (hu + 1024) / 4095 * 255).max() <= 0.5 + 1e-3

    result = _translate(ct_run, pattern, tmp_path / "u16", "--dtype", "uint16")
    assert result.exit_code == 0, result.output
    assert "note: uint16 holds 0..65535: values of the target range -1024..3071 outside it " \
           "are clipped" in result.output
    kept = read_native(tmp_path / "u16" / "ctsmall_r00_c00.tif", 1)  # a TIFF input stays one
    assert kept.dtype == np.uint16
    assert np.abs(kept[:, :, 0] - np.clip(hu, 0, None)).max() <= 0.5 + 1e-3

    source = _inputs(tmp_path / "in", "uint16", ".png", 60000, count=1)[0]
    result = _translate(u16_run, source, tmp_path / "tif", "--format", "tif")
    assert result.exit_code == 0, result.output
    assert "; .tif files" in result.output
    assert tifffile.imread(tmp_path / "tif" / "in0.tif").dtype == np.uint16


def test_impossible_combinations_are_refused_in_one_line_before_loading(
        ct_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imtrans.inference

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the checkpoint was loaded")

    monkeypatch.setattr(imtrans.inference, "load_translator", no_loading)
    test_a = sample_root("ct_denoise") / "testA"
    out = tmp_path / "out"
    cases = [
        (["--dtype", "float32", "--format", "png"],
         "error: --format png cannot hold the float32 outputs of 1 channel: .png cannot hold "
         "float32 images (.png holds uint8 or uint16 with 1, 3 or 4 channels); write .tif "
         "instead, or choose --dtype uint8 or uint16"),
        (["--format", "jpg"], "error: --format jpg cannot hold the int16 outputs of 1 channel: "
                              ".jpg cannot hold int16 images"),
    ]
    for options, message in cases:
        assert error_line(_translate(ct_run, test_a, out, *options)).startswith(message)
    named = error_line(_translate(ct_run, test_a / "ctsmall_r00_c00.tif", out / "x.png"))
    assert named.startswith(f"error: output {out / 'x.png'} cannot hold the int16 outputs")
    assert not out.exists()


def _old_path_bytes(translator: object, source: Path, suffix: str) -> bytes:
    """What translate wrote before native units: translate_image, saved by Pillow."""
    image = translator.translate_image(Image.open(source))  # type: ignore[attr-defined]
    buffer = io.BytesIO()
    image.save(buffer, format=Image.registered_extensions()[suffix])
    return buffer.getvalue()


def test_eight_bit_runs_write_exactly_what_they_wrote_before(pix2pix_run: Path,
                                                             tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (50, 77, 3), dtype=np.uint8)).save(folder / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (30, 40), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 255, (33, 41, 4), dtype=np.uint8)).save(folder / "c.png")
    Image.fromarray(rng.integers(0, 255, (20, 64, 3), dtype=np.uint8)).save(folder / "d.tif")
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / "e.bmp")
    result = _translate(pix2pix_run, folder, tmp_path / "out", "--mode", "eval",
                        "--batch-size", "1")
    assert result.exit_code == 0, result.output
    assert "outputs:" not in result.output  # nothing new is said for 8-bit runs
    translator = load_translator(pix2pix_run, device="cpu", mode="eval")
    assert translator.output_values is None or translator.output_values.dtype == "uint8"
    for source in sorted(folder.iterdir()):
        written = tmp_path / "out" / source.name
        assert written.read_bytes() == _old_path_bytes(translator, source, source.suffix), \
            source.name
    # The array API gives the same 8-bit pixels as the PIL one.
    image = Image.open(folder / "a.jpg")
    array = translator.translate_array(np.asarray(image))
    assert array.dtype == np.float32 and array.min() >= 0 and array.max() <= 255
    assert np.array_equal(convert_dtype(array, "uint8"),
                          np.asarray(translator.translate_image(image)))


def test_an_eight_bit_run_reads_sixteen_bit_inputs_at_full_depth(pix2pix_run: Path,
                                                                  tmp_path: Path) -> None:
    source = _inputs(tmp_path / "in", "uint16", ".png", 60000, count=1)[0]
    result = _translate(pix2pix_run, source, tmp_path / "out", "--mode", "eval")
    assert result.exit_code == 0, result.output
    written = read_native(tmp_path / "out" / "in0.png", 3)
    assert written.dtype == np.uint8  # the run's target domain is 8-bit
    translator = load_translator(pix2pix_run, device="cpu", mode="eval")
    # Normalised over uint16's full range (no 8-bit reduction first).
    full = np.repeat(read_native(source, 1), 3, axis=2)
    network = torch.from_numpy(full.transpose(2, 0, 1).astype(np.float32) / 32767.5 - 1)
    torch.testing.assert_close(translator.to_network(full), network)
    assert np.array_equal(written, convert_dtype(translator.translate_array(full), "uint8"))


def test_the_html_page_shows_renderings_of_sixteen_bit_images(u16_run: Path,
                                                              tmp_path: Path) -> None:
    sources = _inputs(tmp_path / "in", "uint16", ".png", 60000)
    out = tmp_path / "out"
    result = _translate(u16_run, tmp_path / "in", out, "--html")
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text()
    for source in sources:
        preview = out / "index_files" / "outputs" / f"{source.name}.png"
        copy = out / "index_files" / "inputs" / f"{source.name}.jpg"
        assert f'src="index_files/outputs/{source.name}.png"' in page
        assert f'href="{source.name}"' in page  # the preview links the 16-bit output
        for shown in (preview, copy):
            pixels = np.asarray(Image.open(shown))
            assert pixels.dtype == np.uint8
            # A percentile window spreads the image over 0..255 (not a near-black 16-bit PNG).
            assert int(pixels.max()) - int(pixels.min()) > 200, shown
        assert read_native(out / source.name, 1).dtype == np.uint16  # the output stays 16-bit


def test_translate_array_works_in_the_checkpoints_units(ct_run: Path) -> None:
    translator = load_translator(ct_run, device="cpu")
    assert translator.input_values is not None and translator.output_values is not None
    assert translator.output_values.dtype == "int16"
    assert translator.output_values.range.as_list() == [-1024.0, 3071.0]
    noisy = read_native(sample_root("ct_denoise") / "testA" / "ctsmall_r00_c00.tif", 1)
    hu = translator.translate_array(noisy)
    assert hu.dtype == np.float32 and hu.shape == (64, 64, 1)
    assert hu.min() >= -1024 and hu.max() <= 3071
    np.testing.assert_array_equal(translator.translate_array(noisy[:, :, 0]), hu)  # 2-D: 1 band
    with pytest.raises(InvalidArgumentError, match="H x W x 1"):
        translator.translate_array(np.zeros((8, 8, 3), np.int16))


def test_the_memory_budget_reads_the_header_of_native_tiffs(float_run: Path,
                                                             tmp_path: Path) -> None:
    # Two float32 bands: a TIFF Pillow cannot open, so its size is read from its tags.
    big = tmp_path / "big.tif"
    big.write_bytes(encode_image(np.zeros((2000, 2000, 2), np.float32), ".tif"))
    assert big.stat().st_size < 1_000_000
    error = error_line(_translate(float_run, big, tmp_path / "out", "--max-memory", "64M"))
    assert error.startswith(f"error: cannot translate {big}: 2000x2000 pixels (2 x float32) "
                            "would take about "), error
    assert not (tmp_path / "out").exists()


def test_output_types_choose_file_types_and_values_by_the_rules() -> None:
    from imtrans.data.value_range import DomainValues, ValueRange
    from imtrans.inference.output_types import output_type

    ct = DomainValues(ValueRange(-1024, 3071), "int16", 1)
    mri = DomainValues(ValueRange(0, 65535), "uint16", 3)
    bands = DomainValues(ValueRange(0, 1), "float32", 6)
    # auto: the input's file type where it holds the outputs, else the one that does.
    assert [output_type(mri, 3).suffix_for(Path(n)) for n in ("a.tif", "a.PNG", "a.jpg")] == \
        [".tif", ".PNG", ".png"]
    assert output_type(ct, 1).suffix_for(Path("a.dcm")) == ".tif"
    assert output_type(bands, 6).suffix_for(Path("a.png")) == ".tif"
    assert output_type(None, 3).suffix_for(Path("a.jpg")) == ".jpg"  # 8-bit: as before
    assert output_type(ct, 1, file_format="keep").suffix_for(Path("a.jpg")) == ".jpg"
    assert output_type(ct, 1, file_format="png").suffix_for(Path("a.tif")) == ".png"
    # Values: the network's [-1, 1] back onto the target range, in the chosen type.
    network = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 2.0]).reshape(1, 1, 6)
    assert output_type(ct, 1).convert(network)[0, :, 0].tolist() == \
        [-1024, 0, 1024, 3069, 3071, 3071]  # 1023.5 rounds half to even
    assert output_type(ct, 1, dtype="uint16").convert(network)[0, :, 0].tolist() == \
        [0, 0, 1024, 3069, 3071, 3071]
    assert output_type(ct, 1, dtype="uint8").convert(network)[0, :, 0].tolist() == \
        [0, 64, 128, 255, 255, 255]  # the range onto 0..255, as to_uint8
    half = output_type(ct, 1, dtype="float32").convert(network)[0, :, 0]
    assert half.dtype == np.float32 and half[2] == 1023.5
    assert output_type(ct, 1, dtype="uint16").clipping() is not None
    assert output_type(ct, 1).clipping() is None and output_type(ct, 1, dtype="uint8").clipping() \
        is None
    with pytest.raises(InvalidArgumentError, match="dtype must be one of"):
        output_type(ct, 1, dtype="int8")
    with pytest.raises(InvalidArgumentError, match="file_format must be"):
        output_type(ct, 1, file_format="gif")
