"""What the periodic jobs did in one step, published for the jobs after them.

The jobs of a step run in a fixed order (:mod:`imtrans.training.jobs`). A job that depends on
another reads what that one published on ``state.published`` rather than holding it: the
trackers send the sample grid the sample job wrote, evaluation scores the checkpoint the
checkpoint job saved, the report is rewritten when a grid or scores were published.

A job that must run *before* others is told what they need: before any job of a step runs,
the loop collects the :class:`Need` of every job due in it (:attr:`Job.needs
<imtrans.training.jobs.base.Job.needs>`) into :attr:`StepOutcome.needs`. The NaN check runs
when a job due reads values or keeps weights; the checkpoint job saves when a job due needs
the step's weights as a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = ["Need", "StepOutcome"]


class Need(StrEnum):
    """What a job due in a step needs the jobs before it to have done."""

    #: It reads values from the device or keeps the weights: the NaN check runs first.
    FINITE_CHECK = "finite check"
    #: It needs the weights of this step as a checkpoint file.
    CHECKPOINT = "checkpoint"


@dataclass
class StepOutcome:
    """The jobs' part of the current step; a new one begins with each step.

    Attributes:
        needs: What the jobs due in this step need done first (set before any runs).
        record: The metrics record written (the record job, on every process).
        samples: The sample grid written (the sample job, on the process that writes).
        saved: Whether the checkpoint job saved this step (with several processes, the
            ranks other than 0 count rank 0's checkpoint as theirs).
        checkpoint: The checkpoint file it wrote (on the process that writes files).
        eval: The scores of evaluation during training (``[eval]``).
    """

    needs: frozenset[Need] = frozenset()
    record: dict[str, Any] | None = None
    samples: Path | None = None
    saved: bool = False
    checkpoint: Path | None = None
    eval: dict[str, float] | None = None
