"""The training engine: fit loop, checkpoints, schedules, logging."""
