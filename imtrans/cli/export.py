"""The ``imtrans export`` command: a trained generator as an ONNX or TorchScript file.

A thin command over :mod:`imtrans.inference.export`; library errors propagate to the
``imtrans`` group, which turns them into a message and an exit code.
"""

from __future__ import annotations

import click
from rich.text import Text

from imtrans.cli.memory_option import max_memory_option
from imtrans.cli.output import stdout_console

__all__ = ["export"]

#: How each kind of weights is named in what the commands print.
_WEIGHTS = {"ema": "EMA weights", "raw": "raw weights"}


@click.command("export")
# No exists=True: the library's CheckpointError says what a checkpoint must be, with exit 1.
@click.argument("checkpoint")
@click.option("--format", "format_", type=click.Choice(["onnx", "torchscript"]), required=True,
              help="onnx (needs pip install \"imtrans[onnx]\") or torchscript.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: RUN_DIR/export/generator_DIRECTION.onnx or .pt, or "
                   "beside a checkpoint file that is not in a run directory).")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), default="AtoB",
              show_default=True,
              help="AtoB: the recipe's inputs to its targets; BtoA: the inverse (CycleGAN).")
@click.option("--mode", type=click.Choice(["paper", "eval"]), default="paper", show_default=True,
              help="paper: per-image normalisation statistics; eval: batch norm's running "
                   "statistics. Dropout is off in both.")
@click.option("--weights", type=click.Choice(["ema", "raw"]), default=None,
              help="ema: the moving average of the weights (train.ema); raw: the trained "
                   "weights. Default: ema when the checkpoint holds one, else raw.")
@click.option("--check-size", type=click.IntRange(min=1), default=None,
              help="Side of the square input the export is checked on (default: the recipe's "
                   "crop size, rounded up to the generator's multiple).")
@click.option("--opset", type=click.IntRange(min=1), default=None,
              help="ONNX opset version, 18 or newer (default: the exporter's).")
@max_memory_option("the check on --check-size inputs")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing file at the output's name that an earlier export did "
                   "not write (never a run directory's files).")
def export(checkpoint: str, format_: str, output: str | None, direction: str, mode: str,
           weights: str | None, check_size: int | None, opset: int | None,
           max_memory: int | None, overwrite: bool) -> None:
    """Export the generator of CHECKPOINT (a checkpoint file or a run directory, whose newest
    checkpoint is used) for deployment, and check the file against PyTorch: it is loaded back
    and run on two random inputs of different sizes, and kept only if its outputs match."""
    from imtrans.inference.export import default_export_path, export_generator

    console = stdout_console()
    target = output or default_export_path(checkpoint, format_,  # type: ignore[arg-type]
                                           direction)
    result = export_generator(checkpoint, target, format_,  # type: ignore[arg-type]
                              direction=direction, mode=mode,  # type: ignore[arg-type]
                              check_size=check_size, opset=opset,
                              weights=weights,  # type: ignore[arg-type]
                              max_memory=max_memory, overwrite=overwrite)
    opset_note = f", opset {result.opset}" if result.opset is not None else ""
    checked = ", ".join("x".join(map(str, shape)) for shape in result.check_shapes)
    lines = [
        f"wrote {result.path} ({result.format}{opset_note})",
        f"  generator: {result.direction} of {result.checkpoint} (step {result.step}), "
        f"{result.mode} mode, dropout off, {_WEIGHTS[result.weights]}",
        f"  input  {result.input_name!r}: N x {result.in_channels} x H x W float32 in [-1, 1], "
        f"H and W multiples of {result.size_multiple}",
        f"  output {result.output_name!r}: N x {result.out_channels} x H x W float32 in [-1, 1]",
        f"  max abs difference vs PyTorch: {result.max_abs_diff:.3g} "
        f"(tolerance {result.tolerance:g}; checked on {checked})",
    ]
    for line in lines:
        console.print(Text(line), highlight=False)
