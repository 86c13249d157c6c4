"""The ``imtrans translate`` command: run a trained generator over image files.

A thin command over :mod:`imtrans.inference`; library errors propagate to the ``imtrans``
group, which turns them into a message and an exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from imtrans.cli.existing_path import ExistingPath
from imtrans.cli.memory_option import max_memory_option
from imtrans.cli.output import stderr_console
from imtrans.errors import DataError

if TYPE_CHECKING:
    from imtrans.inference.output_types import OutputType
    from imtrans.runs.output_guard import OutputRecord

__all__ = ["translate"]

# imtrans.inference.output_types's DTYPE_CHOICES and FORMAT_CHOICES, written out here: importing
# them would load torch for `imtrans --help` (tests/test_translate_native.py keeps them equal).
_DTYPES = ("auto", "uint8", "uint16", "int16", "float32")
_FORMATS = ("auto", "keep", "png", "tif", "jpg", "webp", "bmp")
# imtrans.inference.precision.PRECISIONS, written out for the same reason.
_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@click.command("translate")
@click.argument("checkpoint", type=ExistingPath())
@click.argument("source", metavar="INPUT")
@click.argument("output", type=click.Path())
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), default="AtoB",
              show_default=True,
              help="AtoB: the recipe's inputs to its targets; BtoA: the inverse (CycleGAN).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Images of the same size translated together.")
@click.option("--device", default=None, help="cuda, cuda:1, cpu... (default: CUDA if present).")
@click.option("--mode", type=click.Choice(["auto", "paper", "eval"]), default="auto",
              show_default=True,
              help="paper: per-image normalisation statistics and dropout as the pix2pix paper "
                   "tests; eval: running statistics, no dropout (deterministic: no flicker "
                   "in video); auto: eval for video, paper for images.")
@click.option("--weights", type=click.Choice(["ema", "raw"]), default=None,
              help="ema: the moving average of the weights (train.ema); raw: the trained "
                   "weights. Default: ema when the checkpoint holds one, else raw.")
@click.option("--tile", "tile_size", default=1024, show_default=True,
              type=click.IntRange(min=16),
              help="Images larger than TILE x TILE pixels are translated in overlapping tiles.")
@click.option("--overlap", "tile_overlap", default=64, show_default=True,
              type=click.IntRange(min=0), help="Pixels shared by neighbouring tiles.")
@click.option("--dtype", type=click.Choice(_DTYPES), default="auto", show_default=True,
              help="Sample type of the outputs. auto: the target domain's, from the checkpoint "
                   "(uint8 for 8-bit runs, int16 for CT in HU...); uint16, int16, float32: "
                   "values in the target domain's units (integers rounded and clipped); uint8 "
                   "of data that is not 8-bit: its value range mapped onto 0..255.")
@click.option("--format", "file_format", type=click.Choice(_FORMATS), default="auto",
              show_default=True,
              help="Output file type. auto: each input's when it holds the outputs' type and "
                   "bands, else 16-bit PNG (uint16) or TIFF; keep: always the input's; png, "
                   "tif, jpg, webp, bmp: every output.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0),
              help="Processes decoding the input images (at most the usable CPU cores).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
              help="Seeds dropout in paper mode, so runs repeat exactly.")
@click.option("--html", "html", is_flag=True,
              help="Also write OUTPUT/index.html, each input beside its output (OUTPUT must "
                   "be a folder; the inputs are copied small into OUTPUT/index_files).")
@click.option("--overwrite", is_flag=True,
              help="Replace existing files at the outputs' names that an earlier translate "
                   "into OUTPUT did not write (never a run directory's files).")
@click.option("--precision", type=click.Choice(_PRECISIONS), default="fp32", show_default=True,
              help="Number type the generator runs in. fp32: as trained; bf16, fp16: about "
                   "twice as fast where the hardware has them, a few 0-255 levels off; auto: "
                   "bf16 on GPUs and CPUs with native bf16, else fp32.")
@click.option("--compile", "compile_network", is_flag=True,
              help="Compile the generator (torch.compile): slow to start, for many images; "
                   "falls back to running it uncompiled, with a warning, where it fails.")
@max_memory_option("translating one image")
def translate(checkpoint: str, source: str, output: str, direction: str, batch_size: int,
              device: str | None, mode: str, weights: str | None, tile_size: int,
              tile_overlap: int, dtype: str, file_format: str, workers: int, seed: int,
              html: bool, overwrite: bool, max_memory: int | None, precision: str = "fp32",
              compile_network: bool = False) -> None:
    """Translate INPUT (an image, a folder searched recursively, or a quoted glob such as
    'photos/**/*.jpg') into OUTPUT with the generator of CHECKPOINT (a checkpoint file or a
    run directory, whose newest checkpoint is used). File names and sub-folders are kept;
    any size and aspect ratio is accepted; unreadable files are skipped with a warning. An
    OUTPUT that would replace an input, lie inside a searched INPUT folder, or receive two
    inputs under one name is refused before any work, and so is an existing file at an
    output's name that an earlier translate into OUTPUT did not write (unless --overwrite).
    Outputs are written in the target domain's sample type and units (8-bit for 8-bit runs,
    int16 TIFF in Hounsfield units for a CT run...; see --dtype and --format). With --html,
    OUTPUT/index.html shows each input beside its output. A video clip (.mp4, .mov, .avi,
    .mkv, .webm, .m4v) or a folder of clips is translated frame by frame, in eval mode by
    default, into clips of the same frame rate and size (needs the video extra)."""
    from imtrans.cli.translator_loading import load_announced
    from imtrans.core.printable import printable_path
    from imtrans.data.workers import capped_workers
    from imtrans.inference.files import output_is_file, translate_files
    from imtrans.inference.output_types import output_type, peek_output
    from imtrans.inference.video import is_video_input

    if is_video_input(source):  # a clip, or a folder of clips: imtrans/cli/translate_video.py
        from imtrans.cli.translate_video import translate_videos

        translate_videos(checkpoint, source, output, direction=direction,
                         batch_size=batch_size, device=device, mode=mode, weights=weights,
                         tile_size=tile_size, tile_overlap=tile_overlap, seed=seed,
                         overwrite=overwrite, precision=precision,
                         compile_network=compile_network,
                         unused={"--html": html, "--dtype": dtype != "auto",
                                 "--format": file_format != "auto"})
        return
    mode = "paper" if mode == "auto" else mode
    if html and output_is_file(output):
        # The page links many files relative to itself: a folder of its own keeps them together.
        raise DataError(f"--html writes OUTPUT/index.html, so OUTPUT must be a folder, not the "
                        f"file name {output}")
    console = stderr_console()
    workers, notice = capped_workers(workers, "--workers")  # each holds a copy of torch
    if notice is not None:
        console.print(Text(f"note: {notice}"), highlight=False)
    # Planned (and checked: no output may replace or feed back into an input, and each file
    # type must hold the outputs' type) before the checkpoint is loaded, so that a refusal costs
    # nothing and writes nothing. The outputs' type comes from the checkpoint's header.
    kind = output_type(*peek_output(checkpoint, direction), dtype=dtype, file_format=file_format)
    pairs, record = _plan(source, output, kind, html, overwrite)
    translator = load_announced(console, f"{len(pairs)} image(s)", checkpoint,
                                direction=direction, device=device, mode=mode,
                                compile_network=compile_network, tile_size=tile_size,
                                tile_overlap=tile_overlap, weights=weights, precision=precision)
    loaded = output_type(translator.output_values, translator.out_channels, dtype=dtype,
                         file_format=file_format)
    if loaded != kind:  # a header read differently (never seen): planned and checked again
        kind = loaded
        pairs, record = _plan(source, output, kind, html, overwrite)
    if not kind.eight_bit:
        console.print(Text(kind.describe()), highlight=False)
        clipping = kind.clipping()
        if clipping is not None:
            console.print(Text(f"note: {clipping}"), highlight=False)

    def warn(path: Path, reason: str) -> None:
        text = f"warning: skipped {printable_path(path)}: {printable_path(reason)}"
        console.print(Text(text, style="yellow"), highlight=False)

    progress = Progress(TextColumn("translate"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console, disable=not console.is_terminal)
    with progress:
        task = progress.add_task("translate", total=len(pairs))
        summary = translate_files(
            translator, pairs, batch_size=batch_size, num_workers=workers, seed=seed,
            on_progress=lambda done: progress.update(task, completed=done), on_skip=warn,
            on_write=lambda path: record.add(path, "translate"), max_memory=max_memory,
            output=kind)
    why = _why(summary.skipped)
    if not summary.written:  # not a success: a script must not go on as if it were
        raise DataError(f"nothing was written: all {len(pairs)} input(s) were skipped ({why})")
    message = f"wrote {len(summary.written)} image(s) to {printable_path(output)}"
    if summary.skipped:
        message += f"; skipped {len(summary.skipped)} file(s) ({why})"
    console.print(Text(message), highlight=False)
    if html:
        from imtrans.inference.html_page import PageHeader, page_files, results_page

        header = PageHeader(printable_path(translator.checkpoint or checkpoint),
                            translator.step, direction, mode,
                            [(printable_path(path), reason) for path, reason in summary.skipped])
        pages = results_page(Path(output), pairs, summary.written, header,
                             translator.in_channels, previews=not kind.eight_bit)
        for path in page_files(Path(output), pairs, previews=not kind.eight_bit):
            if path.is_file() and not path.is_symlink():
                record.add(path, "translate")
        more = f" (and {len(pages) - 1} more page(s))" if len(pages) > 1 else ""
        console.print(Text(f"wrote {pages[0]}{more}"), highlight=False)


def _plan(source: str, output: str, kind: OutputType, html: bool, overwrite: bool
          ) -> tuple[list[tuple[Path, Path]], OutputRecord]:
    """Pair inputs with outputs named for ``kind`` and check them all, before any work: no
    output replaces or feeds back into an input, each file type holds the outputs, and an
    existing file at an output's name is this command's own earlier output."""
    from imtrans.inference.files import output_is_file, plan_outputs
    from imtrans.runs.output_guard import guard_outputs

    pairs = plan_outputs(source, output, kind.suffix_for)
    outputs = [target for _, target in pairs]
    kind.check(outputs, named=output_is_file(output))
    if html:
        from imtrans.inference.html_page import check_page_folder, page_files

        check_page_folder(Path(output), pairs)
        outputs += page_files(Path(output), pairs, previews=not kind.eight_bit)
    # Existing files at the outputs' names must be this command's earlier outputs.
    record = guard_outputs(outputs, Path(output).parent if output_is_file(output)
                           else Path(output), "translate", overwrite=overwrite)
    return pairs, record


def _why(skipped: list[tuple[Path, str]]) -> str:
    """Why files were skipped, counted: ``2 unreadable, 1 output name too long``."""
    from imtrans.inference.files import NAME_TOO_LONG, over_budget

    long_names = sum(reason == NAME_TOO_LONG for _, reason in skipped)
    too_large = sum(over_budget(reason) for _, reason in skipped)
    unreadable = len(skipped) - long_names - too_large
    parts = [f"{unreadable} unreadable"] if unreadable else []
    if too_large:
        parts.append(f"{too_large} beyond the memory budget")
    return ", ".join(parts + ([f"{long_names} output name(s) too long for the file system"]
                              if long_names else []))
