"""Starting a new run from another run's network weights: the recipe's ``[init]`` table.

Fine-tuning takes the weights only. The networks named (default: every network of the
trainer) are loaded strictly from the checkpoint, each from the role of the same name or the
one the table maps it to (``networks = {gen = "gen_ab"}`` starts a pix2pix generator from a
CycleGAN's A -> B generator); optimisers, schedule and step start fresh.

Example:
    >>> recipe.init.source, recipe.init.networks  # doctest: +SKIP
    ('runs/horse2zebra', ['gen_ab', 'gen_ba'])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from imtrans.core.state_tensors import load_module_tensors, tensors_with_prefix
from imtrans.errors import CheckpointError, RecipeError
from imtrans.recipe import InitTable
from imtrans.runs.checkpoints.files import load_checkpoint
from imtrans.runs.checkpoints.lookup import find_checkpoint

__all__ = ["Initialised", "load_initial_weights"]


@dataclass(frozen=True)
class Initialised:
    """Which networks a run took from which checkpoint.

    Attributes:
        checkpoint: The checkpoint file the weights came from.
        step: Its training step.
        roles: This run's role -> the role in the checkpoint it was loaded from.
    """

    checkpoint: Path
    step: int
    roles: dict[str, str]

    def describe(self) -> str:
        """One line for the run's notices."""
        loaded = ", ".join(role if role == source else f"{role} (from {source})"
                           for role, source in self.roles.items())
        return (f"initialised {loaded} from {self.checkpoint} (step {self.step}); optimisers, "
                "schedule and step start fresh")


def _wanted(init: InitTable, networks: Mapping[str, nn.Module]) -> dict[str, str]:
    """This run's roles to load, each with its role in the checkpoint."""
    chosen = init.networks
    wanted = ({role: role for role in networks} if chosen is None
              else {role: role for role in chosen} if isinstance(chosen, list)
              else dict(chosen))
    unknown = [role for role in wanted if role not in networks]
    if unknown or not wanted:
        raise RecipeError(f"[init] networks: {', '.join(unknown) or 'none chosen'}: this "
                          f"trainer's networks are {', '.join(networks)}")
    return wanted


def load_initial_weights(init: InitTable, networks: Mapping[str, nn.Module]) -> Initialised:
    """Load ``init``'s weights into ``networks`` (by role, unwrapped) strictly.

    Raises:
        RecipeError: ``[init] networks`` names a role the trainer has not.
        CheckpointError: no checkpoint at ``[init] from`` (a ``.pth`` file is answered with
            how to import it), a role it lacks, or keys and shapes that differ from the
            recipe's networks (naming the network).
    """
    assert init.source is not None
    wanted = _wanted(init, networks)
    checkpoint = load_checkpoint(find_checkpoint(init.source))
    held = sorted({name.split(".")[1] for name in checkpoint.tensors if name.startswith("net.")})
    for role, source in wanted.items():
        if not tensors_with_prefix(checkpoint.tensors, f"net.{source}"):
            raise CheckpointError(f"[init] from {checkpoint.path}: it has no network {source!r} "
                                  f"(it has {', '.join(held) or 'none'}); choose them with "
                                  "[init] networks")
        try:
            load_module_tensors(f"net.{source}", networks[role], checkpoint.tensors)
        except CheckpointError as exc:
            raise CheckpointError(f"[init] from {checkpoint.path}: {role} does not fit: "
                                  f"{exc}") from None
    return Initialised(checkpoint.path, int(checkpoint.manifest.get("step", 0)), wanted)
