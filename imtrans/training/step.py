"""The training step the loop runs: the trainer's step and what follows it in every step.

:class:`TrainingStep` is what :func:`imtrans.training.build.build_training` hands the fit loop
and ``imtrans bench`` as ``Training.step``: one call trains on one batch. It is the one place
the step is assembled, so a whole-step compile (``speed.compile = "step"``) and the
generators' moving average (``train.ema``) wrap the same thing for every trainer.

The whole-step compile. The first step runs uncompiled: it makes what the trainer makes
lazily (Adam's moments, the image pools' buffers) and teaches each pool its query size. From
the second step on, one ``torch.compile(fullgraph=True)`` graph runs the trainer's step (the
forwards, losses, both backwards through dynamo's traced autograd, the pools, both Adam
updates) and the EMA update; with ``speed.cuda_graphs`` it is compiled in
``mode="reduce-overhead"``, so a step replays CUDA graphs. What the graph cannot decide is
done on the host before it, with no device sync: each pool's random choices become index
tensors (:meth:`~imtrans.trainers.image_pool.ImagePool.prepare`), and each optimiser's
learning rate is copied into a tensor when the schedule changed it, so a new rate is a new
value, not a new graph. The trainer's code stays one code path: the calls of
:mod:`imtrans.trainers.updates` switch to their compilable forms while compiling.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from imtrans.errors import RecipeError
from imtrans.trainers.base import Trainer, image_pools
from imtrans.trainers.image_pool import in_query_order
from imtrans.trainers.updates import VIEW, CompiledView, GroupView
from imtrans.training.speed import compiler_settings

if TYPE_CHECKING:
    from imtrans.trainers.ema import GeneratorEMA

__all__ = ["TrainingStep"]


class TrainingStep:
    """One training step on a batch: ``trainer.training_step``, then the step's bookkeeping.

    Args:
        trainer: The attached trainer.
        ema: The generators' moving average, updated after each step (``train.ema``).
        compile_mode: ``None`` (eager), or the ``torch.compile`` mode of a whole-step compile
            (``"default"``, ``"reduce-overhead"`` for CUDA graphs).
        device: The training device.
        backend: The compiler backend (``"inductor"``; tests use lighter ones).
    """

    def __init__(self, trainer: Trainer, ema: GeneratorEMA | None = None, *,
                 compile_mode: str | None = None, device: torch.device | None = None,
                 backend: str | Callable[..., Any] = "inductor") -> None:
        self.trainer = trainer
        self.ema = ema
        self.compile_mode = compile_mode
        self.device = device or torch.device("cpu")
        self.backend = backend
        self._compiled: Callable[[TrainingStep, dict[str, Tensor]], dict[str, Tensor]] | None = None

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Train on ``batch``; return the trainer's detached loss terms (on the device)."""
        if self.compile_mode is None or self._compiled is None:
            terms = self._step(batch)
            if self.compile_mode is not None:  # the first step made the lazy state
                _unfreeze(self.trainer)
                self._compiled = torch.compile(_own_run_step(), fullgraph=True,
                                               mode=self.compile_mode, backend=self.backend)
            return terms
        self._prepare()
        graphs = self.compile_mode == "reduce-overhead"
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        try:
            with (torch._dynamo.config.patch(trace_autograd_ops=True),
                  compiler_settings(self.device)):  # the graph compiles in the first call
                terms = self._compiled(self, batch)
        except torch._dynamo.exc.TorchDynamoException as exc:  # a graph break, a backend
            # failure: the recipe asked for what this trainer or torch cannot do
            first = next((line for line in str(exc).splitlines() if line.strip()), "")
            raise RecipeError(
                f'speed.compile = "step": the {type(self.trainer).__name__} step cannot be '
                f"compiled as one graph ({type(exc).__name__}: {first}); use "
                'speed.compile = "networks"') from exc
        # CUDA graphs reuse their output memory on the next replay; the loop keeps the terms.
        return {k: v.clone() for k, v in terms.items()} if graphs else terms

    def _step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        terms = self.trainer.training_step(batch)
        if self.ema is not None:
            self.ema.update()
        return terms

    def _prepare(self) -> None:
        """Host work before a compiled step: the trainer's draws, the pools' plans (in the
        order the step queries them, as the uncompiled step draws), the rate tensors."""
        self.trainer.prepare_step()
        for pool in in_query_order(list(image_pools(self.trainer).values())):
            pool.prepare(self.device)
        for optimizer in self.trainer.optimizers().values():
            self._refresh_view(optimizer)

    def _refresh_view(self, optimizer: torch.optim.Optimizer) -> None:
        """Make or update the optimiser's :class:`CompiledView`: the same tensors while
        nothing changed (the graph keeps reading them), new state after a reload (a
        rollback), the rate refilled when the schedule moved it."""
        if not isinstance(optimizer, torch.optim.Adam):
            raise RecipeError(f'speed.compile = "step" steps Adam optimisers only, not '
                              f"{type(optimizer).__name__}")
        view = optimizer.__dict__.get(VIEW)
        if view is None:
            if self.device.type == "cuda":  # step counters on the device, for CUDA graphs
                _make_capturable(optimizer, self.device)
            view = CompiledView([GroupView(
                list(group["params"]), [], torch.tensor(float(group["lr"]), device=self.device),
                {k: v for k, v in group.items() if k not in ("params", "lr")},
                float(group["lr"])) for group in optimizer.param_groups])
            optimizer.__dict__[VIEW] = view
        for group, seen in zip(optimizer.param_groups, view.groups, strict=True):
            state = [optimizer.state[param] for param in seen.params]
            if len(state) != len(seen.state) or any(
                    a is not b for new, old in zip(state, seen.state, strict=True)
                    for a, b in zip(new.values(), old.values(), strict=False)):
                seen.state = [dict(entry) for entry in state]
            rate = float(group["lr"])
            if rate != seen.rate:
                seen.lr.fill_(rate)  # the schedule moved: a new value, the same graph
                seen.rate = rate


def _run_step(step: TrainingStep, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """What the compiled graph holds: ``step``'s trainer step and EMA update."""
    return step._step(batch)


def _own_run_step() -> Callable[[TrainingStep, dict[str, Tensor]], dict[str, Tensor]]:
    """:func:`_run_step` with a code object of its own.

    Dynamo keeps its compiled graphs on the code object. Shared by two whole-step compiles in
    one process (two benchmark runs, a test after another), the second would find the
    first's graphs and guards; and once the first's objects are freed, a new object at the
    same address can pass an identity guard and run a graph made for another trainer. A code
    object per compile gives each its own cache.
    """
    code = _run_step.__code__.replace()  # an equal but distinct code object
    return types.FunctionType(code, _run_step.__globals__, _run_step.__name__)


def _unfreeze(trainer: Trainer) -> None:
    """Let every parameter an optimiser steps require grad: the compiled step does not toggle
    freezing (its backwards name their parameters), and the uncompiled first step may have
    ended with the discriminators frozen."""
    for optimizer in trainer.optimizers().values():
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.requires_grad_(True)


def _make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Adam's step counters on the device (``capturable``), so a CUDA graph holds them."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        for param in group["params"]:
            state = optimizer.state.get(param)
            if state and "step" in state:
                state["step"] = state["step"].to(device)
