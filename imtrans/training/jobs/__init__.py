"""The periodic jobs of training, and the standard list of them.

Each job is one concern with ``due(state)`` and ``run(state)`` (see :class:`Job`); the fit loop
runs the due ones after every step, in the order of the list (:class:`JobList`). Jobs do not
hold each other: each publishes what it did in the step on ``state.published`` (the record,
the sample grid, the checkpoint, the scores) for the jobs after it, and declares in
:attr:`Job.needs` what it needs from the jobs before it. The standard list, in order:

1. :class:`NonFiniteCheck`: NaN/inf in losses or weights, before anything reads or keeps them
   (in the steps where a job due needs the check);
2. :class:`LogRecord`: a metrics record after the first step and every ``train.log_every``
   (``auto``: 50, fewer in a short run);
3. :class:`Progress`: the observer hears of every step (speed, ETA, a line now and then);
4. :class:`SampleGrid`: a sample grid every ``train.sample_every`` steps;
5. :class:`EpochEnd`: the schedule hears the epoch's generator loss;
6. :class:`CheckpointJob`: checkpoints and retention (and the step's weights when a job after
   it needs them as a file);
7. the jobs the caller adds after the checkpoint (:class:`ExtraJobs`): evaluation during
   training, scores and the best checkpoint (``[eval]``, :mod:`imtrans.evaluation.job`);
8. :class:`Trackers`: sample grids to the logger backends (``[log]``), which are closed at the end;
9. the jobs the caller adds before the stop vote: ``report.html`` at the first record, after
   sample grids and evaluations (:mod:`imtrans.report.job`);
10. :class:`StopVote`: stop after the step a signal arrived in (several processes agree on it);
11. the caller's own jobs (``jobs=`` of :func:`imtrans.train`).

:func:`imtrans.runner.fit` (what ``imtrans run`` and :func:`imtrans.train` call) adds 7 and 9;
:func:`imtrans.training.loop.fit` alone trains without them. Jobs that write files exist only
on the process that writes (rank 0).
"""

from __future__ import annotations

from imtrans.training.jobs.base import Job, RolledBack
from imtrans.training.jobs.checkpoint import CheckpointJob, dataset_values
from imtrans.training.jobs.extra import ExtraJobs, JobContext
from imtrans.training.jobs.job_list import JobList
from imtrans.training.jobs.nonfinite import NonFiniteCheck
from imtrans.training.jobs.record import LogRecord, Progress
from imtrans.training.jobs.samples import SampleGrid, grid_preview
from imtrans.training.jobs.schedule import EpochEnd
from imtrans.training.jobs.stop import StopVote
from imtrans.training.jobs.trackers import Trackers
from imtrans.training.step_outcome import Need

__all__ = [
    "CheckpointJob",
    "EpochEnd",
    "ExtraJobs",
    "Job",
    "JobContext",
    "JobList",
    "LogRecord",
    "Need",
    "NonFiniteCheck",
    "Progress",
    "RolledBack",
    "SampleGrid",
    "StopVote",
    "Trackers",
    "default_jobs",
]


def default_jobs(context: JobContext, extra: ExtraJobs | None = None) -> list[Job]:
    """The standard jobs of a run, with the caller's ``extra`` ones at their places, in the
    order they run after each step (see the list above).

    Args:
        context: The run the jobs serve (training, run directory, records, observer).
        extra: The jobs the caller adds (default: none).
    """
    extra = extra if extra is not None else ExtraJobs()
    training, run_dir, ddp, log = context.training, context.run_dir, context.ddp, context.log
    recipe, trainer, schedule = training.recipe, training.trainer, training.schedule
    writes, observer, plan = ddp.is_main, context.observer, training.plan
    assert plan is not None  # built with data
    jobs: list[Job] = [
        NonFiniteCheck(recipe.train, trainer, training.restore, log, observer,
                       can_roll_back=not ddp.enabled),
        LogRecord(recipe.train.log_interval(plan.total_steps), log, schedule, observer),
        Progress(observer, recipe.train.print_every_seconds)]
    if writes and training.sample_batch is not None:
        jobs.append(SampleGrid(recipe.train.sample_every, trainer, training.sample_batch,
                               run_dir, ema=training.ema,
                               preview=grid_preview(recipe.log, training.data)))
    jobs += [EpochEnd(schedule),
             CheckpointJob(recipe, trainer, schedule, run_dir if writes else None,
                           context.environment, ema=training.ema,
                           values=dataset_values(training.data)),
             *extra.after_checkpoint(context)]
    if log is not None:
        jobs.append(Trackers(log))
    return [*jobs, *extra.before_stop(context), StopVote(ddp), *extra.jobs]
