"""Using trained models: load a generator from a checkpoint and translate images with it."""

from __future__ import annotations

from imtrans.checkpoint.lookup import find_checkpoint
from imtrans.inference.translator import Mode, Translator, load_translator

__all__ = ["Mode", "Translator", "find_checkpoint", "load_translator"]
