"""Export a trained generator for deployment as ONNX or TorchScript, checked against PyTorch.

The exported model takes ``float32`` images ``N x C x H x W`` in [-1, 1], with ``H`` and ``W``
multiples of the generator's ``size_multiple``, and returns ``N x C' x H x W`` in [-1, 1]; batch,
height and width are free (dynamic axes in ONNX). Padding other sizes to the multiple, tiling
and conversion to and from ``uint8`` stay with the caller (:class:`~imtrans.Translator` does them
in Python).

Dropout is always off in the exported model, in ``paper`` mode too: a deployed model should give
the same output for the same input. ``paper`` mode keeps the other half of the pix2pix test
behaviour, per-image normalisation statistics in place of batch norm's running ones.

Every export is checked before it is kept: the written file is loaded back (``torch.jit.load``,
or an ``onnxruntime`` session on the CPU) and run on two seeded random inputs, one square and
one non-square with a batch of two, and its outputs are compared with the PyTorch generator's.
The file is written under a temporary name and renamed only after the check passes, so a failed
export leaves nothing behind and never replaces a good file with a half one.

Example:
    >>> from imtrans.inference.export import export_generator
    >>> result = export_generator("runs/edges2shoes", "edges2shoes.onnx", "onnx")  # doctest: +SKIP
    >>> result.max_abs_diff <= result.tolerance  # doctest: +SKIP
    True
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from imtrans.core.atomic import atomic_path
from imtrans.core.paths import refuse_overwrite
from imtrans.core.regular_files import size_text
from imtrans.errors import ExportError, InvalidArgumentError
from imtrans.inference.budget import default_budget, peak_activation_values
from imtrans.inference.tiling import padded_size
from imtrans.inference.translator import Mode, Translator, Weights, load_translator
from imtrans.runs.checkpoints.lookup import find_checkpoint
from imtrans.runs.directory import RunDir
from imtrans.runs.output_guard import OutputRecord, guard_outputs

__all__ = [
    "FORMATS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "TOLERANCES",
    "ExportError",
    "ExportFormat",
    "ExportResult",
    "default_export_path",
    "deployment_generator",
    "export_generator",
]

ExportFormat = Literal["onnx", "torchscript"]

#: File suffix of each format (``.pt`` is PyTorch's usual name for a ``torch.jit.save`` file).
FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt"}

#: Largest accepted max abs difference between the exported model's output and PyTorch's.
#: Measured on the CPU at 256 px (docs/export.md): TorchScript runs the same kernels and matches
#: exactly (0.0); onnxruntime's kernels sum in another order and differ by up to 1.3e-5
#: (resnet_9blocks) and 3.2e-6 (unet_256). The ONNX bound leaves a margin of almost 100x for
#: other CPUs, thread counts and trained weights, and both stay far below one step of an 8-bit
#: image (2 / 255 ~ 7.8e-3): a model that passes saves the same images up to rounding.
TOLERANCES: dict[str, float] = {"torchscript": 1e-5, "onnx": 1e-3}

#: Names of the exported model's input and output (ONNX graph names; TorchScript is positional).
INPUT_NAME = "input"
OUTPUT_NAME = "output"

#: Seed of the random check inputs, so a check repeats exactly.
CHECK_SEED = 0

_ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_generator` wrote and how well it matches PyTorch.

    Attributes:
        path: The exported file.
        format: ``onnx`` or ``torchscript``.
        direction: ``AtoB`` or ``BtoA``.
        mode: ``paper`` or ``eval`` (dropout is off in both).
        in_channels: Channels of the input images.
        out_channels: Channels of the output images.
        size_multiple: What input height and width must be multiples of.
        input_name: Name of the model's input (ONNX).
        output_name: Name of the model's output (ONNX).
        check_shapes: Input shapes the exported model was checked on.
        max_abs_diff: Largest absolute difference from PyTorch's output over those inputs.
        tolerance: The largest difference accepted for this format.
        checkpoint: The checkpoint the generator came from.
        step: Its training step.
        opset: ONNX opset of the exported graph (``None`` for TorchScript).
        weights: ``ema`` (the moving average of the weights) or ``raw`` (the trained ones).
    """

    path: Path
    format: ExportFormat
    direction: str
    mode: Mode
    in_channels: int
    out_channels: int
    size_multiple: int
    input_name: str
    output_name: str
    check_shapes: tuple[tuple[int, ...], ...]
    max_abs_diff: float
    tolerance: float
    checkpoint: Path
    step: int
    opset: int | None
    weights: Weights = "raw"


def default_export_path(checkpoint: Path | str, format: ExportFormat,
                        direction: str = "AtoB") -> Path:
    """Where ``imtrans export`` writes by default.

    ``<run_dir>/export/generator_<direction>.<suffix>`` for a checkpoint of a run directory
    (``<run_dir>/checkpoints/step_*.safetensors``); beside the checkpoint file, named after it,
    otherwise.

    Raises:
        CheckpointError: no checkpoint at ``checkpoint``.
        LinkedRunFileError: the run's ``export/`` folder is a symbolic link (a run's files are
            never written through a link: :mod:`imtrans.runs.file_access`).
    """
    from imtrans.runs.file_access import refuse_linked_folder

    file = find_checkpoint(checkpoint)
    name = f"generator_{direction}{FORMATS[format]}"
    run = RunDir(file.parent.parent)  # not resolved: a relative checkpoint gives a relative path
    if run.checkpoints == file.parent:
        refuse_linked_folder(run.exports)
        return run.exports / name
    return file.parent / f"{file.stem}_{name}"


def deployment_generator(translator: Translator) -> nn.Module:
    """The translator's generator with every dropout module switched off (in place).

    In ``paper`` mode :func:`~imtrans.load_translator` leaves dropout on, as the pix2pix paper
    tests; an exported model must be deterministic, so it is turned off here.
    """
    for module in translator.generator.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()
    return translator.generator


def export_generator(checkpoint: Path | str, output: Path | str, format: ExportFormat, *,
                     direction: str = "AtoB", mode: Mode = "paper",
                     check_size: int | None = None, opset: int | None = None,
                     weights: Weights | None = None,
                     max_memory: int | None = None, overwrite: bool = False) -> ExportResult:
    """Export the generator of a checkpoint to ``output`` and check it against PyTorch.

    Args:
        checkpoint: A checkpoint file, or a run directory (its newest checkpoint is used).
        output: The file to write; its folder is created. An existing file is replaced only
            once the new one has passed the check. It may not be the checkpoint, nor lie in
            the run's ``checkpoints/`` folder (checked before any work).
        format: ``onnx`` (needs ``pip install "imtrans[onnx]"``) or ``torchscript``.
        direction: ``AtoB`` or ``BtoA`` (CycleGAN's second generator).
        mode: ``paper`` (per-image normalisation statistics) or ``eval`` (batch norm's running
            statistics); dropout is off in both, see the module docstring.
        check_size: Side of the square check input (default: the recipe's crop size); rounded
            up to a multiple of the generator's ``size_multiple``. The second check input is
            a batch of two, ``check_size`` high and one multiple wider.
        opset: ONNX opset version (default: the exporter's, 20 with torch 2.14; it writes
            18 or newer).
        weights: ``ema`` or ``raw``; default: the moving average of the weights when the
            checkpoint holds one (``train.ema``), else the trained weights.
        max_memory: Bytes the check may take (default:
            :func:`~imtrans.inference.budget.default_budget`); a check size whose inputs,
            outputs and largest layer need more is refused before anything is allocated.
        overwrite: Replace an existing ``output`` that an earlier export did not write
            (see :mod:`imtrans.runs.output_guard`; a run directory's files never).

    Returns:
        What was written, the input contract, and the measured difference from PyTorch.

    Raises:
        CheckpointError: the checkpoint is missing or unreadable.
        InvalidArgumentError: an unknown format, mode, direction or weights, a bad check
            size or one beyond ``max_memory``, ``weights="ema"`` for a checkpoint without an
            average, or an ``output`` that is a folder, a device or another file that is not
            a regular one, the checkpoint or in the run's checkpoints folder.
        ExportError: the ONNX packages are missing, the exporter failed or could not write
            ``opset``, the file cannot be written (a full disk: the old file is kept), or
            the exported model's output differs from PyTorch's by more than
            :data:`TOLERANCES`.
    """
    if format not in FORMATS:
        raise InvalidArgumentError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if check_size is not None and check_size < 1:
        raise InvalidArgumentError(f"check size must be >= 1, got {check_size}")
    runtime = _require_onnx() if format == "onnx" else None
    if runtime is not None and opset is not None:
        _check_opset(opset)
    file = find_checkpoint(checkpoint)
    output = Path(output)
    record = _refuse_output(file, output, overwrite)
    # Exported on the CPU: the files do not depend on where they were made, and CPU kernels
    # make the check repeatable.
    translator = load_translator(file, direction=direction, device="cpu", mode=mode,
                                 weights=weights)
    generator = deployment_generator(translator)
    multiple = translator.size_multiple
    side = padded_size(check_size or int(translator.recipe.data.kwargs.get("crop_size", 256)),
                       multiple)
    _check_memory(translator, generator, side, check_size,
                  default_budget() if max_memory is None else max_memory)
    inputs = _check_inputs(translator.in_channels, side, multiple)
    with torch.no_grad():
        expected = [generator(x) for x in inputs]

    output.parent.mkdir(parents=True, exist_ok=True)
    # Written and checked under a temporary name, renamed over ``output`` only if it passes.
    # Every byte goes through Python's writes (:func:`_write_file`), so a full disk is an
    # OSError here, never an abort in a library's C++ writer that leaves the temporary.
    try:
        with atomic_path(output) as temporary:
            if format == "onnx":
                assert runtime is not None
                opset_used: int | None = _write_onnx(generator, temporary, translator, opset)
                actual = _run_onnx(runtime, temporary, inputs)
            else:
                opset_used = None
                _write_torchscript(generator, temporary, inputs[0])
                actual = _run_torchscript(temporary, inputs)
            diff = _max_abs_diff(expected, actual, inputs, format)
            tolerance = TOLERANCES[format]
            if not diff <= tolerance:  # also catches NaN
                raise ExportError(
                    f"the exported {format} model differs from PyTorch by {diff:.3g} (max abs "
                    f"difference on inputs {_shapes(inputs)}), above the tolerance "
                    f"{tolerance:g}; nothing was written to {output}")
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ExportError(f"cannot write {output}: {reason}") from exc
    record.add(output, "export")
    return ExportResult(
        path=output, format=format, direction=direction, mode=mode,
        in_channels=translator.in_channels, out_channels=translator.out_channels,
        size_multiple=multiple, input_name=INPUT_NAME, output_name=OUTPUT_NAME,
        check_shapes=tuple(tuple(x.shape) for x in inputs), max_abs_diff=diff,
        tolerance=tolerance, checkpoint=file, step=translator.step,
        opset=opset_used, weights=translator.weights)


def _refuse_output(checkpoint: Path, output: Path, overwrite: bool) -> OutputRecord:
    """Refuse, before any work, an output that is a folder, the checkpoint itself, a file of
    its run's checkpoints folder (where it would replace one, or be taken for one), any run
    directory's file, or an existing file an earlier export did not write (unless
    ``overwrite``). Returns the record of the output's folder."""
    if output.is_dir():
        raise InvalidArgumentError(f"output {output} is a directory; give a file name")
    try:
        mode = os.stat(output).st_mode
    except OSError:
        mode = None  # absent (or unreachable: the write will say why)
    if mode is not None and not stat.S_ISREG(mode):
        # /dev/full, a FIFO...: an export is written beside its output and renamed over it,
        # which would put a file in /dev and replace the device.
        raise InvalidArgumentError(f"output {output} is {_kind(mode)}, not a regular file; "
                                   "give the name of a file to write")
    run = RunDir.of_checkpoint(checkpoint)
    trees = [run.checkpoints] if run is not None else []
    refuse_overwrite([checkpoint], [output], trees=trees, error=InvalidArgumentError,
                     tree_reason="the run's checkpoints folder, where an export would replace "
                                 "a checkpoint or be taken for one")
    return guard_outputs([output], output.parent, "export", overwrite=overwrite,
                         error=InvalidArgumentError)


def _kind(mode: int) -> str:
    kinds = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}
    return next((kind for test, kind in kinds.items() if test(mode)), "not a file")


def _check_memory(translator: Translator, generator: nn.Module, side: int,
                  check_size: int | None, budget: int) -> None:
    """Refuse a check size whose check cannot fit in ``budget`` bytes, before allocating it.

    The check holds its two inputs (``side x side`` and two of ``side x (side + multiple)``),
    PyTorch's outputs and the exported model's, and runs the generator on the batch of two:
    its largest layer's input and output are alive at once (a lower bound of the peak).
    """
    multiple = translator.size_multiple
    pixels = side * side + 2 * side * (side + multiple)
    values = pixels * (translator.in_channels + 2 * translator.out_channels)
    values += peak_activation_values(generator, translator.in_channels, side, side + multiple,
                                     batch=2)
    needed = 4 * values  # float32
    if needed <= budget:
        return
    given = (f"--check-size {check_size}" if check_size is not None
             else f"the recipe's crop size ({side})")
    raise InvalidArgumentError(
        f"{given}: checking the export on {side}x{side} inputs needs at least "
        f"{size_text(needed)}, above the memory budget of {size_text(budget)} (--max-memory); "
        "choose a smaller --check-size or raise --max-memory")


def _require_onnx() -> ModuleType:
    """Import the ONNX packages up front, so a missing one fails before any work; returns
    ``onnxruntime``."""
    missing = []
    for name in _ONNX_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}, not installed here: "
                          'pip install "imtrans[onnx]"')
    return importlib.import_module("onnxruntime")


def _check_inputs(channels: int, side: int, multiple: int) -> list[Tensor]:
    """A square image and a non-square batch of two, so the check covers every dynamic axis."""
    rng = torch.Generator().manual_seed(CHECK_SEED)
    shapes = [(1, channels, side, side), (2, channels, side, side + multiple)]
    return [torch.rand(shape, generator=rng) * 2 - 1 for shape in shapes]


def _check_opset(opset: int) -> None:
    """Refuse, before any work, an opset newer than the installed ``onnx`` knows."""
    import onnx

    newest = int(onnx.defs.onnx_opset_version())
    if opset > newest:
        raise ExportError(f"ONNX opset {opset} is newer than the newest this onnx package "
                          f"knows ({newest}); ask for {newest} or older, or leave the opset out")


def _write_onnx(generator: nn.Module, path: Path, translator: Translator,
                opset: int | None) -> int:
    """Export with the torch.export-based exporter (PyTorch's default); returns the opset."""
    import onnx

    multiple = translator.size_multiple
    batch = torch.export.Dim("batch", min=1)
    height = torch.export.Dim("height", min=1)
    width = torch.export.Dim("width", min=1)
    axes = {0: batch, 2: height * multiple, 3: width * multiple} if multiple > 1 else {
        0: batch, 2: height, 3: width}
    # A batch of two at two multiples per side: torch.export fixes any axis whose example
    # size (or a size derived from it, such as a U-Net's bottleneck) is 1. It traces with fake
    # tensors, so the size costs no computation.
    example = torch.zeros(2, translator.in_channels, 2 * multiple, 2 * multiple)
    # A failed conversion to an older opset is logged with a traceback; the check of the
    # written opset below reports it in one line instead.
    converter_log = logging.getLogger("onnxscript.version_converter")
    level = converter_log.level
    converter_log.setLevel(logging.ERROR)
    try:
        program = torch.onnx.export(
            generator, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=(axes,), opset_version=opset, dynamo=True, verbose=False)
        assert program is not None
        data = program.model_proto.SerializeToString()
    except Exception as exc:  # the exporter raises many kinds; the user needs one message
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: "
                          f"{_first_line(exc)}") from exc
    finally:
        converter_log.setLevel(level)
    _write_file(path, data)
    model = onnx.load(str(path), load_external_data=False)
    written = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    # The exporter writes its own opset and converts down only where it can (not these
    # networks' Pad below 18), keeping its own when it cannot: say so rather than ignore it.
    if opset is not None and written != opset:
        raise ExportError(f"ONNX opset {opset} was asked for, but the exporter could only write "
                          f"opset {written}; ask for {written} or newer, or leave the opset out")
    return written


def _run_onnx(runtime: ModuleType, path: Path, inputs: list[Tensor]) -> list[Tensor]:
    try:
        session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [torch.from_numpy(np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]))
                for x in inputs]
    except Exception as exc:  # onnxruntime's errors are its own classes
        raise ExportError(f"onnxruntime could not run the exported model: "
                          f"{_first_line(exc)}") from exc


def _write_torchscript(generator: nn.Module, path: Path, example: Tensor) -> None:
    """Trace (the generators have no data-dependent control flow) and save."""
    with warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.export, but it is still the format
        # that loads from C++ (libtorch) and Python without the model's code; it is chosen here.
        warnings.filterwarnings("ignore", message=r".*is deprecated", category=FutureWarning)
        # The norms' input-size checks become constants of the trace (the tracer warns); the
        # saved file is checked below on other batch sizes and shapes, which shows the trace
        # generalises. The tracer's own check would only rerun this one input.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
        traced = torch.jit.trace(generator, example, check_trace=False)
        # Into memory, then to the file by Python: torch's C++ file writer aborts the whole
        # process (std::terminate) when a write fails.
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    _write_file(path, buffer.getvalue())


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to the new file ``path`` (a fresh temporary name); a failed write is an
    OSError."""
    with open(path, "xb") as handle:
        handle.write(data)


def _run_torchscript(path: Path, inputs: list[Tensor]) -> list[Tensor]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is deprecated", category=FutureWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return [loaded(x) for x in inputs]


def _max_abs_diff(expected: list[Tensor], actual: list[Tensor], inputs: list[Tensor],
                  format: str) -> float:
    for want, got, x in zip(expected, actual, inputs, strict=True):
        if tuple(got.shape) != tuple(want.shape):
            raise ExportError(f"the exported {format} model returned shape {tuple(got.shape)} "
                              f"for input {tuple(x.shape)}; PyTorch returns {tuple(want.shape)}")
    # torch's max keeps a NaN (Python's max may drop it), so a NaN output fails the check.
    diffs = [(got.float() - want).abs().max() for want, got in zip(expected, actual, strict=True)]
    return float(torch.stack(diffs).max())


def _shapes(inputs: list[Tensor]) -> str:
    return ", ".join("x".join(map(str, x.shape)) for x in inputs)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

