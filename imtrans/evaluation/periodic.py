"""Evaluation during training: every N epochs on a fixed test subset, and the best checkpoint.

The run keeps its newest checkpoints as always (the last one is the result of the run) and,
beside them, ``checkpoints/best.safetensors`` with ``checkpoints/best.json`` saying which step
scored best on the chosen metric. A best-seen score is an optimistic estimate (it was picked
on the data it is reported on), which the report and the final message say.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imtrans.core.atomic import atomic_path, atomic_write
from imtrans.core.components import Components
from imtrans.core.jsonfile import loads_bounded
from imtrans.core.regular_files import read_regular_file
from imtrans.data.value_range import DomainValues
from imtrans.errors import EvaluationError, ImtransError
from imtrans.evaluation.caveats import MIN_IMAGES, small_sample_warnings
from imtrans.evaluation.evaluate import METRICS, Evaluator, check_metrics
from imtrans.evaluation.inception import find_inception, read_inception
from imtrans.evaluation.native_units import (
    INCEPTION_METRICS,
    PIXEL_METRICS,
    describe,
    direction_values,
    inception_refusal,
    is_plain_8bit,
    training_values,
)
from imtrans.evaluation.testset import test_split_of
from imtrans.inference.translator import translator_for
from imtrans.recipe import Recipe
from imtrans.runs.directory import RunDir
from imtrans.trainers.base import Trainer
from imtrans.trainers.ema import GeneratorEMA

__all__ = ["EMA_SCORES", "PeriodicEvaluation", "check_evaluation", "isolated_rng", "read_best"]

#: Scores of the generators' moving average are logged as ``ema/<metric>`` (``eval/ema/fid``
#: for the logger backends), beside the trained weights' ``<metric>``.
EMA_SCORES = "ema"


class PeriodicEvaluation:
    """Scores the training generator every ``eval.every_epochs`` epochs and at the end.

    Built before anything is written, so a missing test split or missing Inception weights
    stop the run at once rather than hours later. The recipe's ``eval.inception`` may name a
    weights file but cannot make imtrans trust one: a file other than the standard Inception
    loads only under ``$IMTRANS_TRUST_INCEPTION=1``, set by the user who runs the training.
    """

    def __init__(self, recipe: Recipe, registry: Components, device: torch.device) -> None:
        self.recipe, self.registry, self.device = recipe, registry, device
        self.table = recipe.eval
        with isolated_rng(device):  # reading the test set draws from the data RNGs
            plan = _plan(recipe, registry)
            self.metric, values = plan.metric, plan.values
            self.evaluator = Evaluator(
                recipe, registry, direction=self.table.direction, metrics=plan.metrics,
                split=self.table.split, max_images=self.table.max_images,
                inception=self.table.inception, device=device, input_values=values[0],
                output_values=values[1])  # no trust_inception: a recipe grants no trust
        self.lower_is_better = METRICS[self.metric]
        #: Why the best checkpoint is not picked by ``[eval] metric`` (FID of CT slices).
        self.metric_notice = plan.notice
        #: What is wrong with the scores of the last :meth:`evaluate` (NaN, FID 0...).
        self.last_warnings: list[str] = []
        _check_metric(self.metric, self.evaluator.metrics)

    @staticmethod
    def enabled(recipe: Recipe) -> bool:
        """Whether the recipe asks for evaluation during training."""
        return recipe.eval.every_epochs > 0

    @classmethod
    def of(cls, recipe: Recipe, registry: Components, device: torch.device
           ) -> PeriodicEvaluation | None:
        """The evaluation ``recipe`` asks for, or None when ``[eval]`` is off."""
        return cls(recipe, registry, device) if cls.enabled(recipe) else None

    @property
    def small_subset_warning(self) -> str | None:
        """What to say once at the start of training when the evaluation subset has fewer
        than :data:`~imtrans.evaluation.caveats.MIN_IMAGES` images (a small split, or a
        small ``[eval] max_images``); None when it is large enough."""
        data = self.evaluator.test_set
        generated, real = len(data.inputs), len(data.targets)
        caveats = small_sample_warnings(self.evaluator.metrics, generated, real)
        if not caveats:
            return None
        counted = f"{generated}" if generated == real else f"{generated} input and {real} real"
        limit = self.table.max_images
        why = (f"[eval] max_images = {limit}" if min(generated, real) >= limit
               else f"all the {data.split} split holds, with [eval] max_images = {limit}")
        return (f"evaluation during training scores {counted} {data.split} images ({why}), "
                f"fewer than {MIN_IMAGES}: " + "; ".join(caveats) +
                ". Compare these scores only with each other, not with published figures.")

    @property
    def start_warnings(self) -> list[str]:
        """What to say once at the start of training: the subset is small
        (:attr:`small_subset_warning`), the Inception weights are not the standard file, the
        best checkpoint is picked by another score than ``[eval] metric``."""
        found = [self.metric_notice, self.small_subset_warning,
                 self.evaluator.inception_warning]
        return [text for text in found if text]

    def due(self, step: int, steps_per_epoch: int, total_steps: int) -> bool:
        """At every N-th epoch end, and at the last step."""
        if step == total_steps:
            return True
        return step % steps_per_epoch == 0 and (step // steps_per_epoch) % \
            self.table.every_epochs == 0

    def evaluate(self, trainer: Trainer, step: int, epoch: int,
                 ema: GeneratorEMA | None = None) -> dict[str, float]:
        """Scores of the current generator (what is wrong with them, if anything, goes to
        :attr:`last_warnings`); training's RNG streams are left untouched.

        With ``ema``, the moving average is scored too, with the same seed and images, under
        ``ema/<metric>`` beside the trained weights' ``<metric>``."""
        role = type(trainer).translators[self.table.direction]
        scored = {"": trainer.modules()[role]}
        if ema is not None and role in ema.roles:
            scored[f"{EMA_SCORES}/"] = ema.averaged_copy(role)  # a copy: translator_for's own
        scores: dict[str, float] = {}
        self.last_warnings = []
        for prefix, generator in scored.items():
            translator = translator_for(generator, self.recipe, self.registry,
                                        direction=self.table.direction, device=self.device,
                                        mode="paper", step=step, copy_network=not prefix)
            translator.weights = "ema" if prefix else "raw"
            with isolated_rng(self.device):
                result = self.evaluator.evaluate(translator, seed=self.recipe.run.seed,
                                                 epoch=epoch, mode="paper")
            scores |= {f"{prefix}{name}": value for name, value in result.metrics.items()}
            self.last_warnings += [f"{prefix}{note}" if prefix else note
                                   for note in self.evaluator.score_warnings]
        return scores

    def ranked_by(self, scores: dict[str, float]) -> str:
        """The score of ``scores`` that picks the best checkpoint: the moving average's
        (``ema/fid``) when it was scored, else the trained weights' (``fid``)."""
        averaged = f"{EMA_SCORES}/{self.metric}"
        return averaged if averaged in scores else self.metric

    def keep_if_best(self, run: RunDir, checkpoint: Path, scores: dict[str, float],
                     step: int, epoch: int) -> bool:
        """Make ``checkpoint`` the best one of ``run`` when its score beats the recorded best
        (a score that is not a finite number never does)."""
        ranked_by = self.ranked_by(scores)
        value = scores[ranked_by]
        if not math.isfinite(value):  # NaN compares false: it would beat every real score
            return False
        best = read_best(run)
        if best is not None and best.get("metric") == self.metric \
                and best.get("ranked_by", self.metric) == ranked_by:
            previous = float(best["value"])
            if (value >= previous) if self.lower_is_better else (value <= previous):
                return False
        with atomic_path(run.best_checkpoint) as partial:
            try:
                os.link(checkpoint, partial)  # a second name for the same bytes: no copy
            except OSError:
                shutil.copyfile(checkpoint, partial)
        record = {"metric": self.metric, "ranked_by": ranked_by, "value": value,
                  "lower_is_better":
                  self.lower_is_better, "step": step, "epoch": epoch,
                  "checkpoint": run.best_checkpoint.name, "copy_of": checkpoint.name,
                  "scores": scores,
                  "note": "selected on the evaluation subset: its score is optimistic; the "
                          "last checkpoint is the run's result"}
        atomic_write(run.best_record, json.dumps(record, indent=2) + "\n")
        return True


@contextlib.contextmanager
def isolated_rng(device: torch.device) -> Iterator[None]:
    """Run the body without moving torch's, Python's or NumPy's random streams, so that
    evaluating leaves training (and an exact resume) as if it had not happened."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def check_evaluation(recipe: Recipe, registry: Components) -> None:
    """What building the recipe's :class:`PeriodicEvaluation` refuses, checked without reading
    a test image: the test split exists, the metrics apply to the data, and the Inception
    weights are found and pass their checksum (read, never loaded). Nothing when ``[eval]``
    is off. ``imtrans validate`` and ``imtrans run`` call it through
    :func:`imtrans.cli.preflight.check_runnable`.

    Raises:
        EvaluationError: with the same message the evaluation would give.
    """
    if not PeriodicEvaluation.enabled(recipe):
        return
    plan = _plan(recipe, registry)
    metrics = check_metrics(plan.metrics, plan.paired, *plan.values)
    _check_metric(plan.metric, metrics)
    if {"fid", "kid"} & set(metrics):
        read_inception(find_inception(recipe.eval.inception))  # the sha256 gate; nothing runs


@dataclass(frozen=True)
class _Plan:
    """What an evaluation during training computes: ``metric`` ranks the checkpoints,
    ``metrics`` are asked of the evaluator (None: those that apply), ``values`` are the
    domains the scored generator reads and writes, ``notice`` says why ``metric`` is not
    ``[eval] metric`` when it is not."""

    metric: str
    metrics: list[str] | None
    values: tuple[DomainValues | None, DomainValues | None]
    paired: bool
    notice: str | None


def _plan(recipe: Recipe, registry: Components) -> _Plan:
    """The metrics of the recipe's ``[eval]`` for its data. On a run in native units whose
    translations are not photos (CT slices, float or multiband images), FID and KID do not
    apply: the best checkpoint is then picked by PSNR (in native units) instead of refusing
    to train, and the evaluation computes the pixel scores."""
    table = recipe.eval
    _, _, paired = test_split_of(recipe, registry, table.split)
    values = direction_values(training_values(recipe, registry), table.direction)
    metric, notice = table.metric, None
    refusal = inception_refusal([metric], *values, paired) if paired else None
    if refusal and metric in INCEPTION_METRICS:
        metric = "psnr"
        notice = (f"[eval] metric {table.metric!r} does not apply to this run, whose "
                  f"translations are {describe(values[1])} images (FID and KID need 1- or "
                  "3-channel 8-bit photos): the best checkpoint is picked by psnr, in native "
                  "units")
    native = not (is_plain_8bit(values[0]) and is_plain_8bit(values[1]))
    metrics = None
    if metric in PIXEL_METRICS:
        metrics = list(PIXEL_METRICS) if native else [metric, *(m for m in ("psnr", "ssim")
                                                             if m != metric)]
    return _Plan(metric, metrics, values, paired, notice)


def _check_metric(metric: str, metrics: list[str]) -> None:
    if metric not in metrics:
        raise EvaluationError(f"[eval] metric {metric!r} does not apply to this data "
                              f"(it gives {', '.join(metrics)})")


def read_best(run: RunDir) -> dict[str, Any] | None:
    """The best-checkpoint record of ``run``, if it has one."""
    try:  # a FIFO would block the training at its first evaluation: never opened
        record = loads_bounded(read_regular_file(run.best_record, what="best-checkpoint record",
                                                 max_bytes=1 << 20).decode("utf-8"))
    except (ImtransError, ValueError):
        return None
    return record if isinstance(record, dict) and "value" in record else None

