"""The training engine: one build of a run (:mod:`~imtrans.engine.build`), the fit loop
(:mod:`~imtrans.engine.loop`) and the periodic jobs it runs between steps
(:mod:`~imtrans.engine.jobs`), over one :class:`~imtrans.engine.state.TrainingState`; beside
them the schedules, the speed switches, DDP, the NaN watch, loss logging and the benchmark."""
