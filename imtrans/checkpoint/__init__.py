"""Checkpoints: the file format (safetensors plus a JSON manifest), their names and retention,
the tensors of networks, optimisers and RNGs, and saving and restoring a whole training state."""
