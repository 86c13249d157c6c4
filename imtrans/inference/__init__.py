"""Using trained models: load a generator from a checkpoint and translate images with it."""

from __future__ import annotations

from imtrans.inference.translator import Mode, Translator, load_translator
from imtrans.runs.checkpoints.lookup import find_checkpoint

__all__ = ["Mode", "Translator", "find_checkpoint", "load_translator"]
