"""A recipe's loss terms, grouped by the trainer slot each fills.

Example:
    >>> from imtrans.losses.adversarial import LSGANLoss
    >>> from imtrans.losses.reconstruction import CycleLoss, IdentityLoss
    >>> terms = LossTerms({"adversarial": LSGANLoss(), "cycle": CycleLoss(weight=10.0),
    ...                    "identity": IdentityLoss(weight=0.0)},
    ...                   {"adversarial": "adversarial", "cycle": "cycle", "identity": "identity"})
    >>> [key for key, _ in terms.in_slot("cycle")], terms.in_slot("identity")
    (['cycle'], [])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from imtrans.errors import InvalidArgumentError

__all__ = ["LossTerms"]


class LossTerms:
    """The built loss terms by recipe key, and the slot each fills.

    Args:
        losses: Built loss modules by recipe key (``[losses.KEY]``).
        slots: The slot each key fills (its ``on``, else the key itself).
    """

    def __init__(self, losses: Mapping[str, nn.Module], slots: Mapping[str, str]) -> None:
        self.losses = dict(losses)
        self.slots = dict(slots)

    def in_slot(self, slot: str) -> list[tuple[str, Any]]:
        """The ``(key, loss)`` terms filling ``slot``, in recipe order, leaving out weight 0."""
        return [(key, loss) for key, loss in self.losses.items()
                if self.slots[key] == slot and getattr(loss, "weight", 1.0) != 0]

    def only(self, slot: str) -> Any:
        """The one term of ``slot`` (weight 0 included): the adversarial loss, say.

        Raises:
            InvalidArgumentError: the slot holds no term or several.
        """
        found = [loss for key, loss in self.losses.items() if self.slots[key] == slot]
        if len(found) != 1:
            raise InvalidArgumentError(f"slot {slot!r} needs exactly one loss term, got "
                                       f"{len(found)}")
        return found[0]
