"""A whole run of a recipe: training with evaluation during it and its report.

:func:`fit` and :func:`train` are what ``imtrans run`` does: the fit loop of
:mod:`imtrans.training.loop`, with the jobs of the floors above training placed among its
standard jobs (:class:`~imtrans.runner.jobs.EvaluationAndReport`): evaluation during training
(``[eval]``) right after the checkpoint job, and ``report.html`` before the stop vote.
``imtrans.train`` and ``imtrans.fit`` are these.
"""

from __future__ import annotations

from imtrans.runner.run import FitResult, fit, train

__all__ = ["FitResult", "fit", "train"]
