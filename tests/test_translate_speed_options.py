"""`imtrans translate --precision/--compile`, `load_translator(precision=, compile=)` and
the background writer: each precision against fp32 on real photos, `auto`'s rule, compile and
its fallback, and a failing write that still stops the translation with one line."""

from __future__ import annotations

import errno
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import imtrans.inference.precision as precision_module
from imtrans.cli import cli
from imtrans.cli import translate as translate_command
from imtrans.core.atomic import TEMP_PREFIX
from imtrans.data.workers import usable_cores
from imtrans.errors import InvalidArgumentError
from imtrans.inference import background_writer, load_translator
from imtrans.inference.background_writer import BackgroundWriter, InlineWriter
from imtrans.inference.precision import (
    PRECISIONS,
    CompileFallbackWarning,
    cpu_has_native_bf16,
    resolve_precision,
)
from imtrans.samples import sample_root
from tests.conftest import cli_error

pytestmark = pytest.mark.floor

CPU = torch.device("cpu")

# Largest and mean difference from fp32, in 0-255 levels, over the bundled test photos
# (5 photos, made 128 x 128) through the 4-step CycleGAN run, measured on an AVX-512 BF16
# CPU: bf16 (channels last) at most 5 levels (mean 0.41, 99.9th percentile 3), fp16 at most 1
# (mean 0.054); at 256 x 256, 8 (mean 0.43) and 1 (0.058). The bounds leave a margin over the
# measures.
MAX_LEVELS = {"bf16": 10, "fp16": 2}
MEAN_LEVELS = {"bf16": 0.7, "fp16": 0.15}


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    """The bundled test photos, made 128 px (fp16 is slow on a CPU)."""
    folder = sample_root("monet2photo") / "testB"
    return [Image.open(path).convert("RGB").resize((128, 128))
            for path in sorted(folder.iterdir())]


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two bundled photos, made small (64 px) for the command-line tests."""
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted((sample_root("monet2photo") / "testB").iterdir())[:2]:
        Image.open(path).convert("RGB").resize((64, 64)).save(folder / f"{path.stem}.png")
    return folder


def _levels(translator: object, photos: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(translator(photo), dtype=np.int16)  # type: ignore[operator]
                     for photo in photos])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_each_precision_is_within_its_stated_levels_of_fp32(
        cyclegan_run: Path, photos: list[Image.Image], precision: str) -> None:
    exact = load_translator(cyclegan_run, device="cpu")
    low = load_translator(cyclegan_run, device="cpu", precision=precision)  # type: ignore[arg-type]
    assert exact.precision == torch.float32 and low.precision_name == precision
    assert next(low.generator.parameters()).dtype == resolve_precision(precision, CPU)
    difference = np.abs(_levels(low, photos) - _levels(exact, photos))
    assert difference.max() <= MAX_LEVELS[precision], difference.max()
    assert difference.mean() <= MEAN_LEVELS[precision], difference.mean()
    assert difference.max() > 0  # really 16 bits: not the fp32 network again
    # The memory budget lays the 16-bit network out as it does the fp32 one (a float32
    # example through 16-bit weights would fail, and leave the budget without activations).
    from imtrans.inference.budget import ImageBudget

    counted = ImageBudget.for_translator(exact, 2**30).activation_bytes
    assert counted > 0 and ImageBudget.for_translator(low, 2**30).activation_bytes == counted
    assert next(low.generator.parameters()).device.type == "cpu"  # the layout is a copy
    # Run in inference mode, returned as an ordinary tensor that callers may change in place.
    out = low(torch.zeros(1, 3, 32, 32))
    assert out.dtype == torch.float32 and not out.is_inference()
    out.mul_(2)


def test_fp32_option_writes_exactly_the_default_files_and_the_plain_loop_s(
        cyclegan_run: Path, photo_folder: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    default = runner.invoke(cli, ["translate", str(cyclegan_run), str(photo_folder),
                                  str(tmp_path / "default")])
    assert default.exit_code == 0, default.output
    fp32 = runner.invoke(cli, ["translate", str(cyclegan_run), str(photo_folder),
                               str(tmp_path / "fp32"), "--precision", "fp32"])
    assert fp32.exit_code == 0, fp32.output
    names = sorted(p.name for p in (tmp_path / "default").glob("*.png"))
    assert len(names) == 2
    for name in names:
        assert (tmp_path / "default" / name).read_bytes() == (tmp_path / "fp32" / name
                                                              ).read_bytes()
    # The benchmark's yardstick runs the same network: its pixels are the default's, but
    # for a level where its own normalisation ((x / 255 - 0.5) / 0.5) rounds otherwise.
    from imtrans.bench.plain_translate import plain_translate

    assert plain_translate(cyclegan_run, photo_folder, tmp_path / "plain") == 2
    for name in names:
        plain = np.asarray(Image.open(tmp_path / "plain" / name), dtype=np.int16)
        default = np.asarray(Image.open(tmp_path / "default" / name), dtype=np.int16)
        assert np.abs(plain - default).max() <= 1 and np.abs(plain - default).mean() < 0.01


def test_bf16_option_of_the_command_says_so_and_writes_bf16_pixels(
        cyclegan_run: Path, photo_folder: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["translate", str(cyclegan_run), str(photo_folder),
                                      str(tmp_path / "out"), "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert "paper mode, bf16" in result.output
    low = load_translator(cyclegan_run, device="cpu", precision="bf16")
    for path in sorted(photo_folder.iterdir()):
        expected = np.asarray(low(Image.open(path).convert("RGB")))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / path.name)), expected)


def test_auto_picks_bf16_only_where_the_hardware_runs_it_natively(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cyclegan_run: Path) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", CPU) == torch.bfloat16
    assert load_translator(cyclegan_run, device="cpu", precision="auto").precision_name == \
        "bf16"
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", CPU) == torch.float32
    assert load_translator(cyclegan_run, device="cpu", precision="auto").precision_name == \
        "fp32"
    monkeypatch.undo()
    # The probe itself: the CPU flags, and oneDNN, which runs bf16 convolutions.
    cpuinfo = tmp_path / "cpuinfo"
    read_flags = precision_module._cpu_flags
    for flags, native in (("fpu avx512f avx512_bf16 sse", True), ("fpu avx2 avx512f", False),
                          ("fpu amx_bf16 amx_tile", True)):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
        with monkeypatch.context() as patch:
            patch.setattr(precision_module, "_cpu_flags", lambda: read_flags(cpuinfo))
            assert cpu_has_native_bf16() is native, flags
            patch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
            assert cpu_has_native_bf16() is False
    assert read_flags(tmp_path / "missing") is None  # not Linux: torch's own probe decides


def test_precision_names_and_a_type_the_device_cannot_run_are_refused(
        monkeypatch: pytest.MonkeyPatch, cyclegan_run: Path, photo_folder: Path,
        tmp_path: Path) -> None:
    assert translate_command._PRECISIONS == PRECISIONS  # the command's copy of the names
    with pytest.raises(InvalidArgumentError, match="precision must be one of"):
        load_translator(cyclegan_run, device="cpu", precision="fp8")  # type: ignore[arg-type]
    original = torch.nn.Conv2d.forward

    def no_half(self: torch.nn.Conv2d, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.float16:
            raise RuntimeError('"slow_conv2d_cpu" not implemented for \'Half\'\nmore detail')
        return original(self, images)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", no_half)
    with pytest.raises(InvalidArgumentError, match="fp16 does not run on cpu"):
        load_translator(cyclegan_run, device="cpu", precision="fp16")
    result = CliRunner().invoke(cli, ["translate", str(cyclegan_run), str(photo_folder),
                                      str(tmp_path / "out"), "--precision", "fp16"])
    line = cli_error(result)
    assert "--precision fp16 does not run on cpu here" in line and "use fp32" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.png"))


def test_compile_falls_back_to_eager_with_one_warning(
        monkeypatch: pytest.MonkeyPatch, cyclegan_run: Path, photos: list[Image.Image],
        photo_folder: Path, tmp_path: Path) -> None:
    def no_compiler(module: torch.nn.Module, **options: object) -> object:
        def compiled(images: torch.Tensor) -> torch.Tensor:
            raise OSError("InvalidCxxCompiler: No working C++ compiler found")
        return compiled

    monkeypatch.setattr(torch, "compile", no_compiler)
    eager = load_translator(cyclegan_run, device="cpu")
    compiled = load_translator(cyclegan_run, device="cpu", compile=True)
    assert compiled.compiled
    small = photos[0].resize((64, 64))
    with pytest.warns(CompileFallbackWarning, match="No working C.. compiler") as caught:
        first = compiled(small)
    assert len(caught) == 1
    assert np.array_equal(np.asarray(first), np.asarray(eager(small)))
    with warnings.catch_warnings():  # once only: later images run eagerly without a word
        warnings.simplefilter("error")
        compiled(small)
    with pytest.warns(CompileFallbackWarning):  # the console script prints it as one line
        result = CliRunner().invoke(cli, ["translate", str(cyclegan_run), str(photo_folder),
                                          str(tmp_path / "out"), "--compile"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert len(list((tmp_path / "out").glob("*.png"))) == 2


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compile_gives_eager_outputs_on_one_small_image(
        cyclegan_run: Path, photos: list[Image.Image]) -> None:
    small = to_tensor_64(photos[0])
    eager = load_translator(cyclegan_run, device="cpu")
    compiled = load_translator(cyclegan_run, device="cpu", compile=True)
    with warnings.catch_warnings():  # compiled for real: no fallback
        warnings.simplefilter("error", CompileFallbackWarning)
        out = compiled(small)
    torch.testing.assert_close(out, eager(small), atol=2e-4, rtol=0)


def to_tensor_64(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.resize((64, 64)), dtype=np.float32) / 127.5 - 1
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_is_within_its_levels_of_fp32(cyclegan_run: Path,
                                                photos: list[Image.Image]) -> None:
    exact = load_translator(cyclegan_run, device="cuda")
    low = load_translator(cyclegan_run, device="cuda", precision="auto")
    assert low.precision_name == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    difference = np.abs(_levels(low, photos) - _levels(exact, photos))
    assert difference.max() <= MAX_LEVELS["bf16"]


@pytest.mark.parametrize("beside", [True, False], ids=["writer-thread", "in-turn"])
def test_a_failing_write_stops_with_one_line(
        monkeypatch: pytest.MonkeyPatch, cyclegan_run: Path, photo_folder: Path,
        tmp_path: Path, beside: bool) -> None:
    # Both writers: beside the network (a GPU, a spare core) and in turn (a full CPU).
    monkeypatch.setattr(background_writer, "encoding_has_a_core", lambda device: beside)
    original = Image.Image.save
    threads: list[str] = []

    def full_after_one(image: Image.Image, target: object, *args: object,
                       **kwargs: object) -> None:
        threads.append(threading.current_thread().name)
        if len(threads) > 1:  # the disk fills up halfway through the second file
            Path(str(target)).write_bytes(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device")
        original(image, target, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "save", full_after_one)
    result = CliRunner().invoke(cli, ["translate", str(cyclegan_run), str(photo_folder),
                                      str(tmp_path / "out"), "--batch-size", "1"])
    line = cli_error(result)
    assert "No space left on device (1 of 2 image(s) written before it)" in line, line
    assert threads == ["imtrans-writer" if beside else threading.main_thread().name] * 2
    first = sorted(photo_folder.iterdir())[0].name
    # The first output stays; the failed one left no file, not even its temporary one.
    assert [p.name for p in (tmp_path / "out").glob("*.png")] == [first]
    assert not list((tmp_path / "out").glob(f"{TEMP_PREFIX}*"))


def test_read_only_output_folder_stops_with_one_line(
        cyclegan_run: Path, photo_folder: Path, tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        result = CliRunner().invoke(cli, ["translate", str(cyclegan_run), str(photo_folder),
                                          str(out)])
        line = cli_error(result)
        assert "cannot write" in line and "(0 of 2 image(s) written before it)" in line
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o700)


def test_background_writer_keeps_order_and_raises_the_first_error_once() -> None:
    written: list[int] = []
    with BackgroundWriter(written.append, capacity=2) as writer:
        for item in range(10):
            writer.put(item)
    assert written == list(range(10))

    def fails_on_three(item: int) -> None:
        if item == 3:
            raise OSError(errno.EROFS, "Read-only file system")
        written.append(item)

    written.clear()
    writer = BackgroundWriter(fails_on_three, capacity=1)
    with pytest.raises(OSError, match="Read-only"):
        for item in range(50):  # the error surfaces at a later put (or at close)
            writer.put(item)
        writer.close()
    writer.close()  # raised once; the writer stopped
    assert written == [0, 1, 2]  # nothing after the failed write


def test_the_inline_writer_writes_at_put_and_raises_there() -> None:
    written: list[int] = []

    def fails_on_two(item: int) -> None:
        if item == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(item)

    with pytest.raises(OSError, match="No space"), InlineWriter(fails_on_two) as writer:
        for item in range(5):
            writer.put(item)
            assert written[-1] == item  # written before put returns
    assert written == [0, 1]


def test_the_writer_thread_is_used_where_encoding_has_a_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cores = usable_cores()
    assert background_writer.encoding_has_a_core(torch.device("cuda"))  # the CPU waits there
    monkeypatch.setattr(background_writer.torch, "get_num_threads", lambda: cores)
    assert not background_writer.encoding_has_a_core(torch.device("cpu"))
    with background_writer.output_writer(lambda item: None, torch.device("cpu")) as writer:
        assert isinstance(writer, InlineWriter)
    if cores > 1:
        monkeypatch.setattr(background_writer.torch, "get_num_threads", lambda: cores - 1)
        assert background_writer.encoding_has_a_core(torch.device("cpu"))
        with background_writer.output_writer(lambda item: None,
                                             torch.device("cpu")) as writer:
            assert isinstance(writer, BackgroundWriter)
