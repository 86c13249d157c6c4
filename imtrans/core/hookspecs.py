"""Hook specifications: how plugins (built-in ones included) add components.

Each hook receives a ``register`` callback and calls it once per component; it returns
nothing. ``register(name, builder)`` takes a lower_snake name and a class or function whose
keyword-only, type-hinted parameters are the arguments a recipe table may give.

Example plugin module::

    import imtrans

    @imtrans.hookimpl
    def register_losses(register):
        register("charbonnier", CharbonnierLoss)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["HOOK_NAMES", "PROJECT", "RegisterFn", "hookimpl", "hookspec"]

PROJECT = "imtrans"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The callback handed to every hook: ``register(name, builder)``.
RegisterFn = Callable[[str, Callable[..., Any]], Any]


@hookspec
def register_generators(register: RegisterFn) -> None:
    """Register generator builders (image -> image networks)."""


@hookspec
def register_discriminators(register: RegisterFn) -> None:
    """Register discriminator builders (image -> real/fake logits, usually a patch map)."""


@hookspec
def register_losses(register: RegisterFn) -> None:
    """Register loss builders (adversarial losses and pair losses such as L1)."""


@hookspec
def register_trainers(register: RegisterFn) -> None:
    """Register trainer classes (how the networks and losses make one training step)."""


@hookspec
def register_datasets(register: RegisterFn) -> None:
    """Register dataset builders (where training images come from)."""


@hookspec
def register_loggers(register: RegisterFn) -> None:
    """Register metrics-logger builders (trackers such as TensorBoard, W&B, MLflow).

    A builder is called with ``run_dir`` (the run directory, a :class:`pathlib.Path`) and the
    options of the recipe's ``[log.<name>]`` table, and returns an object with the methods of
    :class:`imtrans.core.contracts.MetricsLogger`. A package it needs and cannot import is an
    :class:`~imtrans.errors.ImtransError` naming what to install, raised by the builder.
    """


#: Hook name -> the component kind it fills, in the order kinds are listed.
HOOK_NAMES: dict[str, str] = {
    "register_generators": "generators",
    "register_discriminators": "discriminators",
    "register_losses": "losses",
    "register_trainers": "trainers",
    "register_datasets": "datasets",
    "register_loggers": "loggers",
}
