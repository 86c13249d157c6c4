"""The exception hierarchy of imtrans.

The library raises these; only the command line turns them into a message and an exit code.
Every message says what was given and what was expected.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ComponentError",
    "DataError",
    "DuplicateComponentError",
    "EvaluationError",
    "ExportError",
    "ImtransError",
    "InvalidArgumentError",
    "PluginError",
    "RecipeError",
    "TrainingInterrupted",
    "UnknownComponentError",
]


class ImtransError(Exception):
    """Base class of every error imtrans raises on purpose."""


class ComponentError(ImtransError):
    """A component could not be registered, found or built."""


class UnknownComponentError(ComponentError, KeyError):
    """A component name is not registered (the message lists the known names)."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable.
        return str(self.args[0]) if self.args else ""


class DuplicateComponentError(ComponentError):
    """A component name was registered twice in the same registry."""


class InvalidArgumentError(ComponentError, ValueError):
    """A component received an argument it does not accept, or a value of the wrong type,
    shape or device."""


class RecipeError(ImtransError):
    """A recipe file is missing, unreadable or invalid."""


class PluginError(ImtransError):
    """A plugin failed to import, failed to register, or implements an unknown hook."""


class DataError(ImtransError):
    """A dataset is missing, empty or holds images that cannot be used."""


class CheckpointError(ImtransError):
    """A checkpoint is missing, malformed or incompatible with the recipe."""


class TrainingInterrupted(ImtransError):
    """Training was stopped by Ctrl-C or SIGTERM after saving a checkpoint to resume from."""


class EvaluationError(ImtransError):
    """Evaluation cannot run: Inception weights missing, too few images, no test split."""


class ExportError(ImtransError):
    """An export could not be made, or the exported model does not match the PyTorch one."""
