"""Finding NaN and inf in training without a host synchronisation per step.

Each step adds one small flag tensor on the device (which loss terms are finite); nothing is read
back. :meth:`NonFiniteWatch.check` runs where training reads values anyway (every ``log_every``
steps, and before every checkpoint, so a broken model is never saved): it reads all the flags
since the last check in one transfer, and checks every network's weights with one norm per
network. A NaN or inf in a gradient reaches the weights at the optimiser step and every loss of
the next step, so it is caught too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["NonFinite", "NonFiniteWatch", "stop_message"]


@dataclass(frozen=True)
class NonFinite:
    """What a check found.

    Attributes:
        step: The first step whose losses were not finite, or the step of the check when only
            the weights were (a NaN gradient in the last step).
        terms: The loss terms that were not finite at ``step``.
        networks: The networks whose weights are not finite.
    """

    step: int
    terms: list[str]
    networks: list[str]

    def describe(self) -> str:
        """One line: at which step, which loss terms and which networks."""
        parts = []
        if self.terms:
            parts.append(f"loss {', '.join(self.terms)} became NaN or inf at step {self.step}")
        if self.networks:
            where = "then" if self.terms else f"by step {self.step} (a gradient was NaN or inf)"
            parts.append(f"the weights of {', '.join(self.networks)} {where}")
        return "; ".join(parts)


class NonFiniteWatch:
    """Collects per-step finiteness flags on the device and reads them at :meth:`check`."""

    def __init__(self) -> None:
        self._flags: list[Tensor] = []
        self._steps: list[tuple[int, tuple[str, ...]]] = []

    def add(self, step: int, losses: dict[str, Tensor]) -> None:
        """Flag which of this step's loss terms are finite (device work only, no read-back)."""
        if not losses:
            return
        values = torch.stack([value.detach().float().reshape(()) for value in losses.values()])
        self._flags.append(torch.isfinite(values))
        self._steps.append((step, tuple(losses)))

    def check(self, step: int, networks: dict[str, nn.Module]) -> NonFinite | None:
        """Read the flags gathered since the last check and test the weights; reset.

        Args:
            step: The current step (reported when only the weights are broken).
            networks: The networks whose weights to test, by name.

        Returns:
            None when everything is finite, otherwise where it broke first.
        """
        flags = torch.cat(self._flags).tolist() if self._flags else []  # the one read-back
        steps, self._flags, self._steps = self._steps, [], []
        first: tuple[int, list[str]] | None = None
        offset = 0
        for at, names in steps:
            bad = [name for name, ok in zip(names, flags[offset:offset + len(names)],
                                            strict=True) if not ok]
            offset += len(names)
            if bad:
                first = (at, bad)
                break
        broken = [name for name, network in networks.items() if not _finite(network)]
        if first is None and not broken:
            return None
        at, terms = first if first is not None else (step, [])
        return NonFinite(at, terms, broken)


def stop_message(fault: NonFinite, last: Path | None, on_nonfinite: str) -> str:
    """What broke, where the last good checkpoint is, and what to try (``on_nonfinite`` is
    the recipe's ``train.on_nonfinite``)."""
    good = (f"the last good checkpoint is {last}" if last is not None
            else "no checkpoint was saved before it")
    rollback = ("" if on_nonfinite == "rollback" else
                ', or set train.on_nonfinite = "rollback" to skip the batches that broke it')
    return (f"{fault.describe()}; stopped without saving: {good}. Lower optim.lr, check the "
            f"data{rollback}")


def _finite(network: nn.Module) -> bool:
    """Whether every weight of ``network`` is finite (one norm over all of them; weights so
    large that the norm overflows count as broken too)."""
    params = [p.detach() for p in network.parameters()]
    if not params:
        return True
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(params)))
