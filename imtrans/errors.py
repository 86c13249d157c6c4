"""The exception hierarchy of imtrans.

The library raises these; only the command line turns them into a message and an exit code.
Every message says what was given and what was expected.
"""

from __future__ import annotations

import re

__all__ = [
    "CheckpointError",
    "ComponentError",
    "DataError",
    "DuplicateComponentError",
    "EvaluationError",
    "ExportError",
    "ImtransError",
    "InvalidArgumentError",
    "NonFiniteError",
    "PluginError",
    "RecipeError",
    "TrainingInterrupted",
    "UnknownComponentError",
]


# torch's DataLoader re-raises a worker's exception as ``type(exc)(text)``, where the text is
# "Caught DataError in DataLoader worker process 0.\nOriginal Traceback ...". That would put a
# traceback into the one-line message the command line prints.
_WORKER_TEXT = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


def _unwrap_worker_text(text: str, cls: type) -> tuple[str, str | None]:
    """The original message inside a DataLoader worker's re-raise text, and that whole text."""
    if not _WORKER_TEXT.match(text):
        return text, None
    marker = f"\n{cls.__module__}.{cls.__qualname__}: "
    start = text.rfind(marker)
    if start < 0:
        return text, None
    return text[start + len(marker):].rstrip("\n"), text


class ImtransError(Exception):
    """Base class of every error imtrans raises on purpose.

    An error raised in a DataLoader worker and re-raised by torch in the main process keeps
    the worker's message; the worker's traceback becomes a note (shown by ``--debug``).
    """

    def __init__(self, *args: object) -> None:
        note = None
        if len(args) == 1 and isinstance(args[0], str):
            message, note = _unwrap_worker_text(args[0], type(self))
            args = (message,)
        super().__init__(*args)
        if note is not None:
            self.add_note(note)


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


class NonFiniteError(ImtransError):
    """A loss or the weights became NaN or inf; says at which step, in which terms, and which
    checkpoint is the last good one."""


class EvaluationError(ImtransError):
    """Evaluation cannot run: Inception weights missing, too few images, no test split."""


class ExportError(ImtransError):
    """An export could not be made, or the exported model does not match the PyTorch one."""
