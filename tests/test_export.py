"""Exporting generators to ONNX and TorchScript: round trips, dynamic shapes, CLI, failures."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from imtrans.cli import cli
from imtrans.errors import CheckpointError
from imtrans.inference import export as export_module
from imtrans.inference import load_translator
from imtrans.inference.export import (
    TOLERANCES,
    ExportError,
    ExportResult,
    default_export_path,
    deployment_generator,
    export_generator,
)

Exporter = Callable[[str, str, str], ExportResult]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny networks gain nothing from threads, and on a busy two-core machine waiting
    threads slow each forward pass a hundredfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exported(pix2pix_run: Path, cyclegan_run: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Exporter:
    """Export each (run, format, direction) once for the module: ONNX export takes seconds."""
    runs = {"pix2pix": pix2pix_run, "cyclegan": cyclegan_run}
    folder = tmp_path_factory.mktemp("exports")
    cache: dict[tuple[str, str, str], ExportResult] = {}

    def export(run: str, format: str, direction: str = "AtoB") -> ExportResult:
        key = (run, format, direction)
        if key not in cache:
            if format == "onnx":
                pytest.importorskip("onnxruntime")
            output = folder / f"{run}_{direction}{export_module.FORMATS[format]}"
            cache[key] = export_generator(runs[run], output, format,  # type: ignore[arg-type]
                                          direction=direction)
        return cache[key]

    return export


def pytorch_generator(run: Path, direction: str, mode: str = "paper") -> nn.Module:
    """The reference: the generator as PyTorch runs it, dropout off as in the export."""
    generator = load_translator(run, direction=direction, device="cpu",
                                mode=mode).generator  # type: ignore[arg-type]
    for module in generator.modules():
        if isinstance(module, nn.Dropout):
            module.eval()
    return generator


def random_images(*shape: int, seed: int = 123) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


CASES = [("pix2pix", "AtoB"), ("cyclegan", "AtoB"), ("cyclegan", "BtoA")]


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
@pytest.mark.parametrize(("run", "direction"), CASES)
def test_export_round_trip_is_within_the_stated_tolerance(
        exported: Exporter, run: str, direction: str, format: str) -> None:
    result = exported(run, format, direction)
    assert result.path.is_file() and result.format == format
    assert result.direction == direction and result.mode == "paper"
    assert result.tolerance == TOLERANCES[format]
    assert 0 <= result.max_abs_diff <= result.tolerance
    # 6-level U-Net at 64 px; ResNet at 32 px.
    side, multiple = {"pix2pix": (64, 64), "cyclegan": (32, 4)}[run]
    assert result.size_multiple == multiple
    # The recipe's crop size, then a non-square batch of two, one multiple wider.
    assert result.check_shapes == ((1, 3, side, side), (2, 3, side, side + multiple))
    assert (result.opset is not None) == (format == "onnx")
    assert not [p for p in result.path.parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize(("run", "direction"), CASES)
def test_onnx_model_takes_any_batch_and_size(
        exported: Exporter, pix2pix_run: Path, cyclegan_run: Path, run: str,
        direction: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    result = exported(run, "onnx", direction)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["output"]
    reference = pytorch_generator(pix2pix_run if run == "pix2pix" else cyclegan_run, direction)
    k = result.size_multiple
    # Neither size nor batch is one the model was traced or checked with. (Two multiples at
    # least: a ResNet's bottleneck, a quarter of the side, is reflection-padded by 1.)
    for shape in [(2, 3, 2 * k, 3 * k), (3, 3, 4 * k, 2 * k), (1, 3, 3 * k, 2 * k)]:
        images = random_images(*shape)
        (got,) = session.run(None, {"input": images.numpy()})
        with torch.no_grad():
            want = reference(images)
        assert got.shape == shape
        assert float((torch.from_numpy(got) - want).abs().max()) <= TOLERANCES["onnx"]


@pytest.mark.parametrize(("run", "direction"), CASES)
def test_torchscript_model_takes_any_batch_and_size(
        exported: Exporter, pix2pix_run: Path, cyclegan_run: Path, run: str,
        direction: str) -> None:
    result = exported(run, "torchscript", direction)
    with pytest.warns(FutureWarning):  # torch.jit is deprecated, but still loads
        loaded = torch.jit.load(str(result.path))
    reference = pytorch_generator(pix2pix_run if run == "pix2pix" else cyclegan_run, direction)
    k = result.size_multiple
    for shape in [(2, 3, 2 * k, 3 * k), (3, 3, 4 * k, 2 * k)]:
        images = random_images(*shape)
        with torch.no_grad():
            got, want = loaded(images), reference(images)
        assert got.shape == shape
        assert float((got - want).abs().max()) <= TOLERANCES["torchscript"]


def test_eval_mode_uses_running_statistics(pix2pix_run: Path, tmp_path: Path) -> None:
    result = export_generator(pix2pix_run, tmp_path / "g.pt", "torchscript", mode="eval",
                              check_size=70)
    assert result.mode == "eval" and result.check_shapes[0] == (1, 3, 128, 128)  # rounded up
    with pytest.warns(FutureWarning):
        loaded = torch.jit.load(str(result.path))
    images = random_images(1, 3, 64, 64)
    with torch.no_grad():
        got = loaded(images)
        want_eval = pytorch_generator(pix2pix_run, "AtoB", mode="eval")(images)
        want_paper = pytorch_generator(pix2pix_run, "AtoB", mode="paper")(images)
    assert torch.equal(got, want_eval)
    assert not torch.allclose(got, want_paper)  # batch norm's statistics do matter here


def test_export_turns_dropout_off_even_in_paper_mode(pix2pix_run: Path) -> None:
    translator = load_translator(pix2pix_run, device="cpu", mode="paper")
    dropouts = [m for m in translator.generator.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(m.training for m in dropouts)  # as the paper tests
    generator = deployment_generator(translator)
    assert not any(m.training for m in dropouts)
    images = random_images(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(generator(images), generator(images))


def test_a_failed_check_keeps_the_old_file_and_leaves_no_temporary(
        cyclegan_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "generator.pt"
    output.write_bytes(b"the previous export")
    monkeypatch.setitem(export_module.TOLERANCES, "torchscript", -1.0)
    with pytest.raises(ExportError, match=r"differs from PyTorch by 0 .*tolerance -1"):
        # overwrite: the file is not an earlier export's (see tests/test_hostile_writes.py)
        export_generator(cyclegan_run, output, "torchscript", overwrite=True)
    assert output.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generator.pt"]


def test_missing_onnx_packages_give_the_install_command(
        cyclegan_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ExportError, match=r'onnxruntime.*pip install "imtrans\[onnx\]"'):
        export_generator(cyclegan_run, tmp_path / "g.onnx", "onnx")
    result = CliRunner().invoke(cli, ["export", str(cyclegan_run), "--format", "onnx",
                                      "-o", str(tmp_path / "g.onnx")])
    assert result.exit_code == 1
    assert 'error: ONNX export needs onnxruntime' in result.output
    assert 'pip install "imtrans[onnx]"' in result.output
    assert not list(tmp_path.iterdir())


def test_default_output_is_in_the_run_directory_or_beside_the_checkpoint(
        cyclegan_run: Path, tmp_path: Path) -> None:
    assert default_export_path(cyclegan_run, "onnx") == (
        cyclegan_run / "export" / "generator_AtoB.onnx")
    checkpoint = next((cyclegan_run / "checkpoints").glob("step_*.safetensors"))
    loose = Path(shutil.copy(checkpoint, tmp_path / "model.safetensors"))
    assert default_export_path(loose, "torchscript", "BtoA") == (
        tmp_path / "model_generator_BtoA.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        default_export_path(tmp_path / "missing", "onnx")


def test_cli_exports_to_the_run_directory_and_reports_the_difference(
        pix2pix_run: Path) -> None:
    pytest.importorskip("onnxruntime")
    result = CliRunner().invoke(cli, ["export", str(pix2pix_run), "--format", "onnx",
                                      "--mode", "eval", "--opset", "18"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    path = pix2pix_run / "export" / "generator_AtoB.onnx"
    assert path.is_file()
    assert f"wrote {path} (onnx, opset 18)" in result.output
    assert "'input': N x 3 x H x W float32 in [-1, 1], H and W multiples of 64" in result.output
    assert "eval mode, dropout off" in result.output
    diff = float(result.output.split("max abs difference vs PyTorch: ")[1].split()[0])
    assert 0 <= diff <= TOLERANCES["onnx"]
    assert f"(tolerance {TOLERANCES['onnx']:g}; checked on 1x3x64x64, 2x3x64x128)" in result.output


def test_cli_torchscript_to_a_chosen_file(cyclegan_run: Path, tmp_path: Path) -> None:
    output = tmp_path / "deploy" / "monet2photo.pt"
    result = CliRunner().invoke(cli, ["export", str(cyclegan_run), "--format", "torchscript",
                                      "--direction", "BtoA", "-o", str(output),
                                      "--check-size", "16"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert output.is_file()
    assert "BtoA of" in result.output
    assert "max abs difference vs PyTorch: 0 (tolerance 1e-05; checked on 1x3x16x16, " \
           "2x3x16x20)" in result.output


def test_cli_bad_checkpoint_is_an_error_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "nope"), "--format",
                                      "torchscript"])
    assert result.exit_code == 1
    assert result.output.startswith("error: no checkpoint at")
    assert "Traceback" not in result.output
    not_a_checkpoint = tmp_path / "notes.safetensors"
    not_a_checkpoint.write_text("hello")
    result = CliRunner().invoke(cli, ["export", str(not_a_checkpoint), "--format", "onnx"])
    assert result.exit_code == 1 and result.output.startswith("error: ")
