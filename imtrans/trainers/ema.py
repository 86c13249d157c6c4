"""An exponential moving average of the translating generators' weights (``train.ema``).

After every training step each float parameter of each translator (the trainer's
:attr:`~imtrans.trainers.Trainer.translators`: ``gen`` for pix2pix, ``gen_ab`` and ``gen_ba``
for CycleGAN) is blended into its average::

    ema = decay * ema + (1 - decay) * param

The average starts as a copy of the weights it is built from (the initial weights, or those
of ``[init]``), with no warm-up correction: after ``n`` steps it is exactly
``decay**n * v_0 + sum_k (1 - decay) * decay**(n - k) * v_k``, so early on it leans on the
initial weights for about ``1 / (1 - decay)`` steps. That is the plain, closed-form rule; a
run short next to ``1 / (1 - decay)`` steps should use a smaller decay.

Buffers (batch-norm running statistics, their step counters) are copied, not averaged, as
common EMA implementations do: the running statistics already are moving averages of the
training batches, and a counter has no meaningful average.

The update is two foreach calls under ``torch.no_grad()``: no host sync, no ``.item()``, no
Python branch on a tensor's value, so it traces inside a ``torch.compile(fullgraph=True)``
region with the rest of the step.

Example:
    >>> from torch import nn
    >>> net = nn.Linear(2, 1)
    >>> ema = GeneratorEMA({"gen": net}, decay=0.5)
    >>> with torch.no_grad():
    ...     _ = net.weight.add_(2.0)
    >>> ema.update()  # the average moved half way towards the new weights
    >>> sorted(ema.tensors())
    ['ema.gen.bias', 'ema.gen.weight']
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from imtrans.core.state_tensors import check_module_shapes, tensors_with_prefix
from imtrans.errors import InvalidArgumentError

__all__ = ["EMA_PREFIX", "GeneratorEMA"]

#: Checkpoint tensors of the average are named ``ema.<role>.<state-dict key>``.
EMA_PREFIX = "ema"


class GeneratorEMA:
    """Moving averages of some networks' weights, held on the networks' device.

    Args:
        networks: The networks to average, by role (unwrapped: no DDP wrapper), such as
            ``{"gen_ab": ..., "gen_ba": ...}``.
        decay: The weight of the old average at each update, in (0, 1), e.g. 0.999.

    Raises:
        InvalidArgumentError: ``decay`` is not in (0, 1), or ``networks`` is empty.
    """

    def __init__(self, networks: Mapping[str, nn.Module], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise InvalidArgumentError(f"EMA decay must be in (0, 1), got {decay!r}")
        if not networks:
            raise InvalidArgumentError("an EMA needs at least one network to average")
        self.decay = float(decay)
        self.networks = dict(networks)
        #: Per role, the state-dict keys and the averaged (or copied) tensor of each.
        self._state: dict[str, dict[str, Tensor]] = {}
        live_averaged: list[Tensor] = []
        live_copied: list[Tensor] = []
        self._averaged: list[Tensor] = []
        self._copied: list[Tensor] = []
        for role, network in self.networks.items():
            parameters = {id(p) for p in network.parameters()}
            own: dict[int, Tensor] = {}  # tied weights share one average
            self._state[role] = {}
            for key, live in network.state_dict(keep_vars=True).items():
                if id(live) not in own:
                    own[id(live)] = live.detach().clone()
                    averaged = id(live) in parameters and live.is_floating_point()
                    (live_averaged if averaged else live_copied).append(live.detach())
                    (self._averaged if averaged else self._copied).append(own[id(live)])
                self._state[role][key] = own[id(live)]
        self._live_averaged, self._live_copied = live_averaged, live_copied

    @classmethod
    def of_translators(cls, translators: Mapping[str, str], networks: Mapping[str, nn.Module],
                       decay: float) -> GeneratorEMA:
        """The EMA of a trainer's translating generators.

        Args:
            translators: The trainer's ``translators`` (direction to role).
            networks: The trainer's networks by role, unwrapped.
            decay: See the class.
        """
        roles = dict.fromkeys(translators.values())  # in order, each role once
        return cls({role: networks[role] for role in roles}, decay)

    @property
    def roles(self) -> list[str]:
        """The roles averaged (``gen``, or ``gen_ab`` and ``gen_ba``...)."""
        return list(self._state)

    def update(self) -> None:
        """Blend the current weights into the average; copy the buffers.

        Call it once after every optimiser step. It launches two foreach kernels and reads
        nothing back, so it may run inside a compiled (``fullgraph=True``) step.
        """
        # A with-block, not the decorator: dynamo compiles a decorated bound method as the
        # top-level function unreliably ("self missing" once other graphs were compiled).
        with torch.no_grad():
            if self._averaged:  # lists fixed at build time: no branch on tensor values
                torch._foreach_lerp_(self._averaged, self._live_averaged, 1.0 - self.decay)
            if self._copied:
                torch._foreach_copy_(self._copied, self._live_copied)

    @torch.no_grad()
    def reset(self) -> None:
        """Restart the average from the networks' current weights (after loading a
        checkpoint that holds no average)."""
        for averages, live in ((self._averaged, self._live_averaged),
                               (self._copied, self._live_copied)):
            if averages:
                torch._foreach_copy_(averages, live)

    def state_dict(self, role: str) -> dict[str, Tensor]:
        """The averaged network ``role`` as a state dict (its own tensors, not copies)."""
        return dict(self._state[role])

    def tensors(self, prefix: str = EMA_PREFIX) -> dict[str, Tensor]:
        """Every averaged tensor as ``{"ema.<role>.<key>": tensor}``, for a checkpoint.

        The tensors are the average's own: save them before the next :meth:`update`.
        """
        return {f"{prefix}.{role}.{key}": tensor
                for role, state in self._state.items() for key, tensor in state.items()}

    @torch.no_grad()
    def load_tensors(self, tensors: Mapping[str, Tensor], prefix: str = EMA_PREFIX) -> None:
        """Load the average from a checkpoint's ``ema.<role>.*`` tensors, strictly.

        Raises:
            CheckpointError: a role is missing, or its keys or shapes are not the network's.
        """
        for role, state in self._state.items():
            check_module_shapes(f"{prefix}.{role}", self.networks[role], tensors)
            given = tensors_with_prefix(tensors, f"{prefix}.{role}")
            for key, tensor in state.items():
                tensor.copy_(given[key])

    @staticmethod
    def held_by(tensors: Mapping[str, Tensor], prefix: str = EMA_PREFIX) -> bool:
        """Whether checkpoint ``tensors`` hold an average."""
        start = f"{prefix}."
        return any(name.startswith(start) for name in tensors)

    def averaged_copy(self, role: str) -> nn.Module:
        """A copy of network ``role`` holding the averaged weights (for evaluation); the
        network being trained and the average are left as they are."""
        network = copy.deepcopy(self.networks[role])
        with torch.no_grad():
            network.load_state_dict(self._state[role], strict=True)
        return network

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Run the body with the averaged weights in the live networks, then put the
        trained weights back exactly (bit for bit): the average itself is never changed,
        so whatever the body does to the networks' tensors is undone."""
        live = self._live_averaged + self._live_copied
        saved = [t.clone() for t in live]
        with torch.no_grad():
            torch._foreach_copy_(live, self._averaged + self._copied)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(live, saved)

