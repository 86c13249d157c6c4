"""The hooks imtrans calls (entry point ``cut``): register the PatchNCE loss and the trainer."""

from __future__ import annotations

from typing import Any

import imtrans


@imtrans.hookimpl
def register_losses(register: Any) -> None:
    from imtrans_cut.loss import PatchNCELoss  # imported when imtrans asks, not at import

    register("patchnce", PatchNCELoss)


@imtrans.hookimpl
def register_trainers(register: Any) -> None:
    from imtrans_cut.trainer import CUTTrainer

    register("cut", CUTTrainer)
