"""Checkpoints: the file format (safetensors plus a JSON manifest), their names and retention,
the tensors of networks, optimisers and RNGs, saving and restoring a whole training state, and
which checkpoint a path means (:mod:`imtrans.runs.checkpoints.lookup`)."""
