"""The run directory and what lives in it: its layout (:mod:`~imtrans.runs.directory`), the
one-writer lock, in-place files never reached through a link, outputs that never replace a
run's files, the metrics record reader, and the checkpoint format
(:mod:`imtrans.runs.checkpoints`).

Above the trainers and below the catalogue: it knows files, tensors and trainers, never how a
recipe is assembled or trained.
"""
