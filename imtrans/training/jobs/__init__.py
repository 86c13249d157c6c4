"""The periodic jobs of training, and the standard list of them.

Each job is one concern with ``due(state)`` and ``run(state)`` (see :class:`Job`); the fit loop
runs the due ones after every step, in the order of the list. The standard list, in order:

1. :class:`NonFiniteCheck`: NaN/inf in losses or weights, before anything reads or keeps them;
2. :class:`LogRecord`: a metrics record after the first step and every ``train.log_every``;
3. :class:`Progress`: the observer hears of every step (speed, ETA, a line now and then);
4. :class:`SampleGrid`: a sample grid every ``train.sample_every`` steps;
5. :class:`EpochEnd`: the schedule hears the epoch's generator loss;
6. :class:`Checkpoint`: checkpoints and retention;
7. :class:`Evaluation`: scores and the best checkpoint (``[eval]``);
8. :class:`Trackers`: sample grids to the logger backends (``[log]``), which are closed at the end;
9. :class:`Report`: ``report.html`` at the first record, after samples and evaluations;
10. :class:`StopVote`: stop after the step a signal arrived in (several processes agree on it).

Jobs that write files exist only on the process that writes (rank 0).
"""

from __future__ import annotations

from typing import Any

from imtrans.core.distributed import Distributed
from imtrans.core.observer import TrainingObserver
from imtrans.evaluation.periodic import PeriodicEvaluation
from imtrans.runs.directory import RunDir
from imtrans.training.build import Training
from imtrans.training.jobs.base import Job, RolledBack
from imtrans.training.jobs.checkpoint import Checkpoint
from imtrans.training.jobs.evaluation import Evaluation
from imtrans.training.jobs.log import LogRecord, Progress
from imtrans.training.jobs.nonfinite import NonFiniteCheck
from imtrans.training.jobs.report import Report
from imtrans.training.jobs.samples import SampleGrid
from imtrans.training.jobs.schedule import EpochEnd
from imtrans.training.jobs.stop import StopVote
from imtrans.training.jobs.trackers import Trackers
from imtrans.training.run_log import RunLog

__all__ = [
    "Checkpoint",
    "EpochEnd",
    "Evaluation",
    "Job",
    "LogRecord",
    "NonFiniteCheck",
    "Progress",
    "Report",
    "RolledBack",
    "SampleGrid",
    "StopVote",
    "Trackers",
    "default_jobs",
]


def default_jobs(training: Training, run_dir: RunDir, *, ddp: Distributed,
                 observer: TrainingObserver, environment: dict[str, Any],
                 evaluation: PeriodicEvaluation | None = None, log: RunLog | None = None
                 ) -> list[Job]:
    """The standard jobs of a run, in the order they run after each step.

    Args:
        training: What is trained (trainer, schedule, recipe).
        run_dir: Where the run writes.
        ddp: This process's place among the training processes.
        observer: Receives progress, records and notices.
        environment: The versions record every checkpoint holds.
        evaluation: Evaluation during training, when ``[eval]`` asks for it (rank 0 only).
        log: Where records go on the writing process (default: ``metrics.jsonl`` alone).
    """
    recipe, trainer, schedule = training.recipe, training.trainer, training.schedule
    writes = ddp.is_main
    if not writes:
        log = None
    elif log is None:
        log = RunLog(run_dir.metrics)
    record = LogRecord(recipe.train.log_every, log, schedule, observer)
    checkpoint = Checkpoint(recipe, trainer, schedule, run_dir if writes else None, environment,
                            ema=training.ema)
    samples = (SampleGrid(recipe.train.sample_every, trainer, training.sample_batch, run_dir,
                          ema=training.ema)
               if writes and training.sample_batch is not None else None)
    scores = (Evaluation(evaluation, ddp.unwrapped(trainer), checkpoint, run_dir, log,
                         observer, ema=training.ema)
              if evaluation is not None and log is not None else None)
    guarded: list[Job] = [record, checkpoint, *([scores] if scores else [])]
    jobs: list[Job] = [
        NonFiniteCheck(recipe.train, trainer, guarded, training.restore, log, observer,
                       can_roll_back=not ddp.enabled),
        record, Progress(observer, recipe.train.print_every_seconds),
        *([samples] if samples else []), EpochEnd(schedule), checkpoint,
        *([scores] if scores else []),
    ]
    if log is not None:
        jobs.append(Trackers(log, samples, run_dir))
        jobs.append(Report(run_dir, observer, after=[j for j in (samples, scores) if j],
                           first=[record]))
    jobs.append(StopVote(ddp))
    return jobs
