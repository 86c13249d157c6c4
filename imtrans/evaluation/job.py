"""Evaluation during training (``[eval]``) as a job of the fit loop: every N epochs and at the
end, score the generator on the test subset, log the scores, and keep the checkpoint when it
is the best yet.

The job needs the scored weights as a file: it declares :attr:`Need.CHECKPOINT
<imtrans.training.step_outcome.Need.CHECKPOINT>`, so the checkpoint job (which runs just
before it) saves the step when its cadence would not, and publishes the file this job keeps
as the best. The scores are published in turn (``state.published.eval``) for the report.
With ``train.ema`` both the trained weights and their moving average are scored (``fid`` and
``ema/fid``...), and the average's score picks the best checkpoint: it is what translate, eval
and export use by default. :func:`imtrans.runner.fit` adds the job to a run.
"""

from __future__ import annotations

from imtrans.core.observer import TrainingObserver
from imtrans.evaluation.periodic import PeriodicEvaluation
from imtrans.runs.directory import RunDir
from imtrans.trainers.base import Trainer
from imtrans.trainers.ema import GeneratorEMA
from imtrans.training.jobs.base import Job
from imtrans.training.records import MetricsLog
from imtrans.training.state import TrainingState
from imtrans.training.step_outcome import Need

__all__ = ["EvaluationJob"]


class EvaluationJob(Job):
    """Scores the generator and keeps the best checkpoint (on the process that writes files).

    Args:
        evaluation: The evaluator, built before training so a missing test split or Inception
            stops the run at once.
        trainer: The trainer as evaluation sees it (networks without DDP wrappers).
        run_dir: Where ``best.safetensors`` goes.
        log: Where the scores are recorded.
        observer: Receives the one-line summary.
        ema: The generators' moving average, scored beside the trained weights.
    """

    #: It reads the weights, and scores them from a file it can keep as the best.
    needs = frozenset({Need.FINITE_CHECK, Need.CHECKPOINT})

    def __init__(self, evaluation: PeriodicEvaluation, trainer: Trainer, run_dir: RunDir,
                 log: MetricsLog, observer: TrainingObserver,
                 ema: GeneratorEMA | None = None) -> None:
        self.evaluation, self.trainer, self.run_dir = evaluation, trainer, run_dir
        self.log, self.observer, self.ema = log, observer, ema

    def due(self, state: TrainingState) -> bool:
        return self.evaluation.due(state.step, state.plan.steps_per_epoch,
                                   state.plan.total_steps)

    def run(self, state: TrainingState) -> None:
        checkpoint = state.published.checkpoint
        assert checkpoint is not None, "the checkpoint job runs before and saves this step"
        step, evaluation = state.step, self.evaluation
        epoch = -(-step // state.plan.steps_per_epoch)  # epochs begun: a final partial one counts
        scores = evaluation.evaluate(self.trainer, step, epoch, ema=self.ema)
        self.log.write({"step": step, "epoch": epoch, "eval": scores})
        state.published.eval = scores
        best = evaluation.keep_if_best(self.run_dir, checkpoint, scores, step, epoch)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in scores.items())
        self.observer.message(f"eval at step {step} (epoch {epoch}): {shown}"
                              + (f"; best {evaluation.ranked_by(scores)} so far" if best else ""))
        for note in evaluation.last_warnings:  # NaN, FID 0 between different images...
            self.observer.message(f"warning: {note}")
