"""Evaluation during training (``[eval]``): every N epochs and at the end, score the generator
on the test subset, log the scores, and keep the checkpoint when it is the best yet. The scored
weights are saved first if this step has no checkpoint, so the best one exists as a file.
With ``train.ema`` both the trained weights and their moving average are scored (``fid`` and
``ema/fid``...), and the average's score picks the best checkpoint: it is what translate, eval
and export use by default."""

from __future__ import annotations

from imtrans.core.observer import TrainingObserver
from imtrans.evaluation.periodic import PeriodicEvaluation
from imtrans.runs.directory import RunDir
from imtrans.trainers.base import Trainer
from imtrans.trainers.ema import GeneratorEMA
from imtrans.training.jobs.base import Job
from imtrans.training.jobs.checkpoint import Checkpoint
from imtrans.training.loss_log import MetricsLog
from imtrans.training.state import TrainingState

__all__ = ["Evaluation"]


class Evaluation(Job):
    """Scores the generator and keeps the best checkpoint (on the process that writes files).

    Args:
        evaluation: The evaluator, built before training so a missing test split or Inception
            stops the run at once.
        trainer: The trainer as evaluation sees it (networks without DDP wrappers).
        checkpoint: The checkpoint job, to save the scored weights when needed.
        run_dir: Where ``best.safetensors`` goes.
        log: Where the scores are recorded.
        observer: Receives the one-line summary.
        ema: The generators' moving average, scored beside the trained weights.
    """

    def __init__(self, evaluation: PeriodicEvaluation, trainer: Trainer, checkpoint: Checkpoint,
                 run_dir: RunDir, log: MetricsLog, observer: TrainingObserver,
                 ema: GeneratorEMA | None = None) -> None:
        self.evaluation, self.trainer, self.checkpoint = evaluation, trainer, checkpoint
        self.run_dir, self.log, self.observer, self.ema = run_dir, log, observer, ema

    def due(self, state: TrainingState) -> bool:
        return self.evaluation.due(state.step, state.plan.steps_per_epoch,
                                   state.plan.total_steps)

    def run(self, state: TrainingState) -> None:
        if not state.saved_now:  # the scored weights must exist as a file
            self.checkpoint.save(state)
        assert state.last_checkpoint is not None  # the writing process saved it
        step, evaluation = state.step, self.evaluation
        epoch = -(-step // state.plan.steps_per_epoch)  # epochs begun: a final partial one counts
        scores = evaluation.evaluate(self.trainer, step, epoch, ema=self.ema)
        self.log.write({"step": step, "epoch": epoch, "eval": scores})
        best = evaluation.keep_if_best(self.run_dir, state.last_checkpoint, scores, step, epoch)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in scores.items())
        self.observer.message(f"eval at step {step} (epoch {epoch}): {shown}"
                              + (f"; best {evaluation.ranked_by(scores)} so far" if best else ""))
        for note in evaluation.last_warnings:  # NaN, FID 0 between different images...
            self.observer.message(f"warning: {note}")
