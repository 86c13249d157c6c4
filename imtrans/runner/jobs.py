"""The jobs a whole run adds to training: evaluation during training and the report.

Training does not import the floors above it; :class:`EvaluationAndReport` is how they join a
run. The evaluator is built once the training is (it needs the device), before anything is
written, so a missing test split or Inception file stops the run at once; the jobs are built
once the run directory is open, and placed where the standard order puts them (see
:mod:`imtrans.training.jobs`).
"""

from __future__ import annotations

from collections.abc import Sequence

from imtrans.catalogue.plugins import Components
from imtrans.core.distributed import Distributed
from imtrans.evaluation.job import EvaluationJob
from imtrans.evaluation.periodic import PeriodicEvaluation
from imtrans.recipe.schema import Recipe
from imtrans.report.job import ReportJob
from imtrans.training.build import Training
from imtrans.training.jobs import ExtraJobs, Job, JobContext

__all__ = ["EvaluationAndReport"]


class EvaluationAndReport(ExtraJobs):
    """Evaluation during training (``[eval]``, after the checkpoint job) and ``report.html``
    (before the stop vote), on the process that writes files; the caller's ``jobs`` last.

    Args:
        recipe: The recipe trained (its ``[eval]``).
        registry: The components (the test split's dataset).
        jobs: The caller's own jobs, run after all others.
    """

    def __init__(self, recipe: Recipe, registry: Components, jobs: Sequence[Job] = ()) -> None:
        super().__init__(jobs)
        self.recipe, self.registry = recipe, registry
        self.evaluation: PeriodicEvaluation | None = None

    def prepare(self, training: Training, ddp: Distributed) -> list[str]:
        """Build the evaluator (rank 0, when ``[eval]`` asks); its warnings for the start (a
        small test subset, Inception weights other than the standard file)."""
        if ddp.is_main:
            self.evaluation = PeriodicEvaluation.of(self.recipe, self.registry, ddp.device)
        return self.evaluation.start_warnings if self.evaluation is not None else []

    def after_checkpoint(self, context: JobContext) -> list[Job]:
        if self.evaluation is None or context.log is None:
            return []
        training = context.training
        return [EvaluationJob(self.evaluation, context.ddp.unwrapped(training.trainer),
                              context.run_dir, context.log, context.observer, ema=training.ema)]

    def before_stop(self, context: JobContext) -> list[Job]:
        return [ReportJob(context.run_dir, context.observer)] if context.log is not None else []
