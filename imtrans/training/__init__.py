"""Training: one build of a run (:mod:`~imtrans.training.build`) and its feasibility checks,
the step (:mod:`~imtrans.training.step`), the state (:mod:`~imtrans.training.state`), the
periodic jobs (:mod:`~imtrans.training.jobs`) and the fit loop (:mod:`~imtrans.training.loop`);
beside them the schedules, the speed switches, the NaN watch, the records and checkpointing of
a whole training state."""
