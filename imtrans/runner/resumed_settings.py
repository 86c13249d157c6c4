"""What a resumed run keeps of the run it continues, besides what its checkpoint restores:
the number of steps between metric records that ``train.log_every = "auto"`` became.

``auto`` depends on the run's length (:meth:`~imtrans.recipe.schema.TrainTable.log_interval`),
and a resume may change the length (``train.max_steps``). The number the run used is in its
checkpoint's recipe; a resume with ``auto`` takes it, so the records keep their spacing. A
number the user states is kept as stated.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open

from imtrans.core.jsonfile import loads_bounded
from imtrans.recipe.schema import Recipe
from imtrans.runs.checkpoints.files import MANIFEST_KEY

__all__ = ["keep_log_interval"]


def keep_log_interval(recipe: Recipe, checkpoint: Path | None) -> Recipe:
    """``recipe``, with the ``train.log_every`` of ``checkpoint``'s run when it says ``auto``.

    Args:
        recipe: The recipe a run continues with.
        checkpoint: The checkpoint it resumes from (None: a start).
    """
    if checkpoint is None or recipe.train.log_every != "auto":
        return recipe
    saved = _saved_log_every(checkpoint)
    if saved is None:  # an older or foreign checkpoint: auto for this run's length
        return recipe
    train = recipe.train.model_copy(update={"log_every": saved})
    return recipe.model_copy(update={"train": train})


def _saved_log_every(checkpoint: Path) -> int | None:
    """The ``train.log_every`` in the checkpoint's manifest, read from the file's header only
    (the restore reads the tensors); None when there is none to read."""
    try:
        with safe_open(str(checkpoint), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
        saved = loads_bounded(metadata[MANIFEST_KEY])["recipe"]["train"]["log_every"]
    except Exception:  # any damage: the restore reads the file again and says what is wrong
        return None
    if isinstance(saved, int) and not isinstance(saved, bool) and saved >= 1:
        return saved
    return None
