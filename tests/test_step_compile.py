"""The whole-step compile (``speed.compile = "step"``): one graph per trainer, no graph break,
no recompilation when the learning rate moves, and the numbers of the eager step.

Every registered trainer is compiled (plugins' included), with the ``aot_eager`` backend:
dynamo captures the step and AOTAutograd traces the forwards, backwards and updates into one
graph, which then runs torch's own kernels, so the comparison with eager isolates what the
restructuring changed (nothing, beyond float rounding) from what inductor's code generation
changes; the inductor test compiles one trainer fully and counts what a step dispatches.

Tolerances. Losses agree within 1e-4 relative over the steps (a missed or doubled update moves
them by 1e-2 and more). Weights are compared through what they compute, each network's output
on a fixed batch: the two runs' outputs must be closer than a tenth of how far the five steps
moved them. Not closer: Adam divides each gradient by its running magnitude, so a parameter
whose gradient is rounding noise (a conv bias in front of an instance norm, whose true
gradient is zero) takes full steps of either sign; such parameters differ by up to 2 x lr
per step (measured: 6e-4 after 5 steps), and in CycleGAN the outputs then differ by up to
1e-3 (seen in one full-suite run) while the losses agree within 1e-4.
"""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from imtrans.catalogue.plugins import components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.trainers import LossTerms, OptimizerFactory, Trainer
from imtrans.trainers.base import attach, set_train_mode
from imtrans.trainers.updates import VIEW
from imtrans.training.build import build_training
from imtrans.training.step import TrainingStep

REGISTRY = components()
TRAINERS = sorted(REGISTRY.trainers)
STEPS = 5
DECAY_AT = 3  # the schedule lowers the rate before this step


def tiny_recipe(trainer: str) -> dict:
    """The trainer's defaults at a tiny width: a U-Net of 5 downs where the method uses a
    U-Net (with its batch norm and dropout), else a 6-block ResNet."""
    cls = REGISTRY.trainers.get(trainer).builder
    defaults = cls.recipe_defaults()
    generator = defaults.get("generator", {}).get("name", "")
    tiny = ({"name": "unet", "num_downs": 5} if generator.startswith("unet")
            else {"name": "resnet_6blocks"})
    raw = {"trainer": {"name": trainer}, "data": {"root": "unused"},
           "generator": tiny | {"ngf": 4}, "discriminator": {"ndf": 4},
           "schedule": {"n_epochs": 1, "n_epochs_decay": 3}}
    if "pool_size" in (cls.__init__.__kwdefaults__ or {}):
        raw["trainer"]["pool_size"] = 3  # fills, then swaps, within the test's steps
    return raw


def batches(count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [{k: torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1 for k in ("A", "B")}
            for _ in range(count)]


def train(trainer: str, backend=None, ema: float | None = None
          ) -> tuple[torch.Tensor, dict[str, torch.nn.Module]]:
    """Losses of each step (one row each) and the trained networks (with ``ema``, the
    averaged generators instead); compiled whole when a backend is given."""
    torch.manual_seed(0)
    raw = tiny_recipe(trainer) | ({"train": {"ema": ema}} if ema else {})
    training = build_training(recipe_from_dict(raw, registry=REGISTRY),
                              REGISTRY, device=torch.device("cpu"), data=False)
    step = TrainingStep(training.trainer, training.ema,
                        compile_mode=None if backend is None else "default",
                        backend=backend or "inductor")
    set_train_mode(training.trainer)
    training.schedule.begin_epoch(0)
    rows = []
    for index, batch in enumerate(batches(STEPS)):
        if index == DECAY_AT:
            training.schedule.begin_epoch(1)  # rate x 0.75: a new value, not a new graph
        terms = step(batch)
        rows.append(torch.stack([terms[k] for k in sorted(terms)]))
    if backend is not None:  # the graph reads the rate from the view's tensor
        for optimizer in training.trainer.optimizers().values():
            for group, view in zip(optimizer.param_groups,
                                   optimizer.__dict__[VIEW].groups, strict=True):
                assert view.lr.item() == pytest.approx(group["lr"]) == pytest.approx(
                    0.75 * training.schedule.initial_rates[0][0])
    if training.ema is not None:
        return torch.stack(rows), {role: training.ema.averaged_copy(role)
                                   for role in training.ema.roles}
    return torch.stack(rows), training.trainer.modules()


def initial(trainer: str) -> dict[str, torch.Tensor]:
    """The networks' outputs before any step (the same seed builds the same weights)."""
    torch.manual_seed(0)
    training = build_training(recipe_from_dict(tiny_recipe(trainer), registry=REGISTRY),
                              REGISTRY, device=torch.device("cpu"), data=False)
    return outputs(training.trainer.modules())


def outputs(networks: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Each network's output on one fixed batch, in evaluation mode (copies: no state moves)."""
    probe = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(7)) * 2 - 1
    seen = {}
    for name, network in networks.items():
        if name.startswith("loss_"):  # a loss term's head: compared through the losses
            continue
        twin = copy.deepcopy(network).eval()
        channels = next(p for p in twin.parameters() if p.dim() == 4).shape[1]
        with torch.no_grad():
            seen[name] = twin(probe.repeat(1, channels // 3 + 1, 1, 1)[:, :channels])
    return seen


@pytest.mark.parametrize("trainer", TRAINERS)
def test_step_compiles_to_one_graph_and_matches_eager(trainer: str) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    counter = CompileCounterWithBackend("aot_eager")
    eager_losses, eager_networks = train(trainer)
    compiled_losses, compiled_networks = train(trainer, backend=counter)
    # Step 1 runs uncompiled (it makes the lazy state); steps 2-5 are one graph, compiled
    # once: no graph break (fullgraph), no recompilation after the rate changed at step 4.
    assert counter.frame_count == 1, f"{counter.frame_count} graphs compiled"
    assert not torch._dynamo.utils.counters["graph_break"]
    assert torch.allclose(compiled_losses, eager_losses, rtol=1e-4, atol=1e-5), (
        (compiled_losses - eager_losses).abs().max())
    want, got, start = outputs(eager_networks), outputs(compiled_networks), initial(trainer)
    for name in want:
        moved = (want[name] - start[name]).abs().max()
        apart = (got[name] - want[name]).abs().max()
        assert apart <= 0.1 * moved, f"{name}: {apart:.2e} apart, training moved {moved:.2e}"


def test_the_generator_average_is_updated_inside_the_compiled_step() -> None:
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    _, eager = train("pix2pix", ema=0.5)
    _, compiled = train("pix2pix", backend=counter, ema=0.5)
    assert counter.frame_count == 1
    want, got = outputs(eager), outputs(compiled)
    assert list(want) == ["gen"]
    assert torch.allclose(got["gen"], want["gen"], rtol=0, atol=1e-4)


def test_explain_finds_no_graph_break_in_a_warm_step() -> None:
    torch._dynamo.reset()
    training = build_training(recipe_from_dict(tiny_recipe("cyclegan"), registry=REGISTRY),
                              REGISTRY, device=torch.device("cpu"), data=False)
    step = TrainingStep(training.trainer, compile_mode="default", backend="eager")
    set_train_mode(training.trainer)
    first, second = batches(2)
    step(first)  # the uncompiled first step
    step._prepare()
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        explained = torch._dynamo.explain(step._step)(second)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="inductor on the CPU needs a C++ compiler")
def test_inductor_step_matches_eager_and_dispatches_fewer_operators() -> None:
    from torch.profiler import ProfilerActivity, profile

    def operators(step: TrainingStep, batch: dict[str, torch.Tensor]) -> int:
        with profile(activities=[ProfilerActivity.CPU]) as trace:
            step(batch)
        return sum(1 for event in trace.events() if event.name.startswith("aten::"))

    counts = {}
    for backend in (None, "inductor"):
        torch.manual_seed(0)
        torch._dynamo.reset()
        recipe = recipe_from_dict(tiny_recipe("pix2pix"), registry=REGISTRY)
        training = build_training(recipe, REGISTRY, device=torch.device("cpu"), data=False)
        step = TrainingStep(training.trainer, compile_mode=backend and "default")
        set_train_mode(training.trainer)
        data = batches(4)
        # Dropout draws from torch's generator in the compiled graph too, so the two runs
        # see the same masks and can be compared.
        with torch._inductor.config.patch(fallback_random=True):
            losses = [step(batch)["G"] for batch in data[:3]]
            counts[backend] = operators(step, data[3])
        if backend is None:
            eager = torch.stack(losses)
    assert torch.allclose(torch.stack(losses), eager, rtol=1e-4)
    # Eager dispatches every operator of both updates; the compiled step calls its fused
    # kernels and the convolutions it leaves to torch.
    assert counts["inductor"] < counts[None] / 2, counts


class _HostReadingTrainer(Trainer):
    """A step that branches on a tensor's value on the host: it cannot be one graph."""

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        total = batch["A"].sum()
        return {"G": total if total > 0 else -total}


def test_a_step_that_cannot_be_one_graph_is_a_clear_recipe_error() -> None:
    from imtrans.errors import RecipeError

    torch._dynamo.reset()
    trainer = _HostReadingTrainer()
    attach(trainer, {}, LossTerms({}, {}), OptimizerFactory())  # nothing to train
    step = TrainingStep(trainer, compile_mode="default", backend="eager")
    batch = batches(1)[0]
    step(batch)  # uncompiled: fine
    with pytest.raises(RecipeError, match=r'speed.compile = "step": the _HostReadingTrainer '
                                          r'step cannot be compiled as one graph .*"networks"'):
        step(batch)
