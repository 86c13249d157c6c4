"""Shared settings of the plugin's tests."""

from __future__ import annotations

import torch

# Tensors here are tiny (32 px, 4 channels): one thread is faster than several, which spend
# their time synchronising and compete with other processes for the cores.
torch.set_num_threads(1)
