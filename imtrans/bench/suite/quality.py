"""The suite's quality proof (``--quality``): train pix2pix facades at the paper's settings on
the fast path, then score it as ``imtrans eval`` does.

At full size this is ``recipes/pix2pix_facades.toml`` as shipped (200 epochs of 400 images at
batch 1: 80,000 images) in the fastest mode the speed runs found (else the fastest that
trains), with the images held on the device. The evaluation is ``imtrans eval``'s
(:class:`~imtrans.evaluation.Evaluator`: FID and KID against the real test photos, PSNR and
SSIM against each ground truth), saved in the run's ``eval/`` folder like ``imtrans eval``'s.
Without the Inception weights, PSNR and SSIM are still scored, and the translated test images
are written as PNG files so that FID and KID can be computed elsewhere.

At the tiny size (CI) it trains a few steps at 64 px on the given folder, or on generated
images, and scores a few test images: the scores then only show the format.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imtrans.bench.suite.images import make_image_folders
from imtrans.bench.suite.plan import MODE_NAMES, Mode, SuiteSize, shipped_recipe
from imtrans.catalogue.plugins import Components, components
from imtrans.core.observer import TrainingObserver
from imtrans.errors import DataError, EvaluationError, ImtransError, TrainingInterrupted

__all__ = ["QUALITY_PREFERENCE", "QualityOptions", "quality_modes", "run_quality"]

Record = dict[str, Any]

#: The modes tried when no speed run says which is fastest: fastest expected first.
QUALITY_PREFERENCE = ("compile_step", "compile_networks", "bf16_eager", "fp32_eager")

#: The tiny run: 64 px (the smallest U-Net with dropout has 6 levels), a few steps.
_TINY = ("data.load_size=72", "data.crop_size=64", "generator.name=unet",
         "generator.num_downs=6", "generator.ngf=8", "discriminator.ndf=8",
         "train.max_steps=4", "train.log_every=1",
         "train.sample_every=1000")
_TINY_TEST_IMAGES = 8
#: What a tiny run's scores mean.
_TINY_NOTE = ("tiny run: a few training steps and a few test images, so FID and KID mean "
              "nothing here; the line only shows the format")


@dataclass(frozen=True)
class QualityOptions:
    """What the quality proof trains and where it writes.

    Attributes:
        size: ``SIZES["tiny"]`` or ``SIZES["full"]``.
        out_dir: Holds the run directory and, without Inception weights, ``translated/``.
        data_root: The facades folder (``train/``, ``test/``); None at the tiny size only
            (generated images then).
        inception: The FID Inception weights (None: ``imtrans eval``'s search).
        modes: The modes that may be used, fastest first.
        overrides: The user's ``--set`` strings, applied last.
    """

    size: SuiteSize
    out_dir: Path
    data_root: Path | None
    inception: str | None
    modes: tuple[str, ...]
    overrides: tuple[str, ...] = ()


def quality_modes(records: Sequence[Record], allowed: Sequence[str]) -> tuple[str, ...]:
    """``allowed`` modes, fastest first: by the speed runs' pix2pix batch-1 images/s, then
    (those not measured, or failed) in :data:`QUALITY_PREFERENCE` order."""
    rates: dict[str, float] = {}
    for record in records:
        if record.get("case") == "pix2pix_b1" and "images_per_sec" in record:
            rates[record["mode"]] = record["images_per_sec"]
    measured = sorted((m for m in rates if m in allowed), key=lambda m: -rates[m])
    failed = {r["mode"] for r in records if r.get("case") == "pix2pix_b1" and "error" in r}
    rest = [m for m in QUALITY_PREFERENCE if m in allowed and m not in rates and m not in failed]
    return (*measured, *rest)


def run_quality(options: QualityOptions, emit: Callable[[Record], None] | None = None, *,
                registry: Components | None = None,
                progress: Callable[[str], None] | None = None) -> list[Record]:
    """Train, then evaluate; return the records (``quality_train``, ``quality_eval``, and
    one with ``error`` for each mode that failed to train before one succeeded).

    Raises:
        DataError: ``data_root`` is not a facades folder (or is missing at full size).
        ImtransError: training or evaluation failed for a reason a mode change cannot fix
            (bad data, bad ``--set``, unusable Inception weights), or no mode trained.
    """
    registry = registry or components()
    emit = emit or (lambda record: None)
    say = progress or (lambda line: None)
    records: list[Record] = []

    def add(record: Record) -> None:
        records.append(record)
        emit(record)

    with tempfile.TemporaryDirectory(prefix="imtrans-quality-") as temporary:
        root = _data_root(options, Path(temporary))
        trained = _train(options, root, registry, add, say)
        add(trained)
        say(f"evaluating {trained['checkpoint']}")
        add(_evaluate(options, root, registry, trained))
    return records


def _data_root(options: QualityOptions, scratch: Path) -> Path:
    """The facades folder, checked; generated images at the tiny size without one."""
    if options.data_root is None:
        if options.size.name != "tiny":
            raise DataError("--quality needs --data-root DIR: the facades folder holding "
                            "train/ and test/ (`imtrans data download facades` fetches it)")
        return make_image_folders(scratch, size=64, count=16, test=_TINY_TEST_IMAGES).paired
    root = options.data_root
    missing = [s for s in ("train", "test") if not (root / s).is_dir()]
    if missing:
        raise DataError(f"--data-root {root}: no {' or '.join(s + '/' for s in missing)} "
                        "there; expected the facades folder (pix2pix layout, train/ val/ "
                        "test/ of A|B images)")
    return root


class _Collector(TrainingObserver):
    """Keeps the images/s of each metrics record; passes progress lines on."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.rates: list[float] = []

    def message(self, text: str) -> None:
        self.say(text)

    def on_progress_line(self, line: str) -> None:
        self.say(line)

    def on_log(self, record: dict[str, Any]) -> None:
        if record.get("images_per_sec"):
            self.rates.append(float(record["images_per_sec"]))


def _train(options: QualityOptions, root: Path, registry: Components,
           add: Callable[[Record], None], say: Callable[[str], None]) -> Record:
    """Train in the first mode of ``options.modes`` that trains; its record."""
    from imtrans.catalogue.recipe_loader import load_recipe
    from imtrans.core.device import select_device
    from imtrans.runner import fit

    recipe_path = shipped_recipe("pix2pix_facades")
    base = load_recipe(recipe_path, options.overrides, registry=registry)
    cuda = select_device(base.run.device, TrainingObserver()).type == "cuda"
    for name in options.modes:
        mode = MODE_NAMES[name]
        sets = _overrides(options, root, mode, cuda)
        recipe = load_recipe(recipe_path, sets, registry=registry)  # a bad --set stops here
        head = {"suite": "gpu", "case": "quality_train", "mode": name,
                "size": options.size.name}
        say(f"training {recipe_path.name} in {name}")
        collector = _Collector(say)
        started = time.perf_counter()
        try:
            result = fit(recipe, registry=registry, observer=collector)
        except (ImtransError, TrainingInterrupted):
            raise  # the data or the recipe: another mode would fail the same way
        except Exception as exc:  # this mode does not train here: the next one may
            add(head | {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}"})
            continue
        seconds = time.perf_counter() - started
        images = result.step * recipe.data.batch_size
        steady = collector.rates[1:] or collector.rates  # the first record holds the warm-up
        return head | {
            "recipe": str(recipe_path), "overrides": sets, "steps": result.step,
            "images": images, "train_seconds": seconds, "images_per_sec": images / seconds,
            "steady_images_per_sec": statistics.median(steady) if steady else None,
            "run_dir": str(result.run_dir),
            "checkpoint": str(result.checkpoint) if result.checkpoint else None}
    raise ImtransError(f"--quality: no mode trained ({', '.join(options.modes)}); see the "
                       "error of each quality_train line")


def _overrides(options: QualityOptions, root: Path, mode: Mode, cuda: bool) -> list[str]:
    sets = [f"data.root={str(root)!r}", f"run.output_dir={str(options.out_dir / 'runs')!r}",
            'data.cache="device"', "data.num_workers=0", *mode.overrides,
            *(mode.cuda_overrides if cuda else ())]
    if options.size.name == "tiny":
        sets += _TINY
    return [*sets, *options.overrides]


def _evaluate(options: QualityOptions, root: Path, registry: Components,
              trained: Record) -> Record:
    """Score the trained checkpoint on the test split, as ``imtrans eval`` does."""
    from imtrans.evaluation import Evaluator, find_inception, save_result
    from imtrans.inference import load_translator
    from imtrans.runs.directory import RunDir

    checkpoint = Path(trained["checkpoint"])
    translator = load_translator(checkpoint, registry=registry)
    try:
        inception: Path | None = find_inception(options.inception)
        missing = None
    except EvaluationError as exc:
        if options.inception is not None:
            raise  # a path was given and is wrong: say so rather than score without it
        inception, missing = None, str(exc)
    tiny = options.size.name == "tiny"
    evaluator = Evaluator(translator.recipe, registry, direction="AtoB",
                          metrics=None if inception else ["psnr", "ssim"], split="test",
                          data_root=root, max_images=_TINY_TEST_IMAGES if tiny else None,
                          inception=inception, device=translator.device)
    generated = evaluator.translate(translator, seed=0)
    scores = evaluator.score(generated)
    result = evaluator.result(translator, scores, len(generated), mode="paper", seed=0)
    run = RunDir.of_checkpoint(checkpoint)
    saved = save_result(result, run.evaluations if run else checkpoint.parent, checkpoint.stem)
    record: Record = {
        "suite": "gpu", "case": "quality_eval", "mode": trained["mode"],
        "size": options.size.name, "metrics": scores,
        "images": result.protocol["images"], "split": result.split,
        "result_file": str(saved.path), "warnings": result.warnings,
        "meaningful": not tiny}
    if tiny:
        record["note"] = _TINY_NOTE
    if missing is not None:
        folder = options.out_dir / "translated" / "AtoB"
        _write_pngs(generated, folder)
        record |= {"images_written": str(folder), "fid": None, "kid": None,
                   "inception_missing": missing,
                   "score_elsewhere": f"imtrans eval {trained['run_dir']} --data DATA_ROOT "
                                      "--inception fid_inception_tf2015.pt"}
    return record


def _write_pngs(images: torch.Tensor, folder: Path) -> None:
    """The ``uint8`` translations as ``00000.png``..., in test-set order."""
    from imtrans.core.atomic import atomic_path
    from imtrans.inference.translator import tensor_to_image

    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        with atomic_path(folder / f"{index:05d}.png") as partial:  # no half image on failure
            tensor_to_image(image.float() / 127.5 - 1).save(partial, format="PNG")
