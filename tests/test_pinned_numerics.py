"""Training numbers pinned before the loop and trainer redesign: a few CycleGAN and pix2pix
steps on a fixed seed must do the same operations and give the same losses.

Bits are not pinned: how a float rounds depends on the kernels torch picks for the CPU (its
vector width, AMX, or ``ATEN_CPU_CAPABILITY``), so bit-exact pins failed on another CPU. What
the pins protect, the same operations in the same order, is held three ways instead:

1. **The operations, exactly.** Every ATen operation each of the 3 steps dispatches (forwards,
   backwards, Adam, random draws), with its arguments' dtypes and shapes and every scalar
   (a loss weight, a learning rate, an epsilon), recorded by :class:`op_trace.OpTrace` and
   compared by sha256 per step with ``pinned_op_traces.json``, for the torch release the
   trace was taken on (kernels and decompositions change between releases). Rounding happens
   below that level: the traces were identical with ``ATEN_CPU_CAPABILITY=default``, ``avx2``
   and the native ``AVX512`` kernels (AMD EPYC, torch 2.14.1). Pinned for torch 2.14.1 and
   for the floor, 2.11.0 (CI's second leg runs this file there): the floor's traces came out
   identical to 2.14.1's, and the losses below hold on both.
2. **The values, within the measured spread.** The losses of every step against the pins
   taken with the code before the redesign (AMD EPYC, AVX2 kernels, one thread), with
   tolerances set from the spread measured across those three kernel sets on one machine:

   ============================  =======================  ==========
   losses                        largest relative spread  tolerance
   ============================  =======================  ==========
   pix2pix, steps 1-3            1.9e-7                   1e-5
   CycleGAN, step 1              2.2e-6                   1e-5
   CycleGAN, steps 2-3           2.7e-3 (``default``)     2e-2
   ============================  =======================  ==========

   (An Intel Xeon with AMX differed from the pins by 3.7e-7 at CycleGAN step 2.) Step 1
   losses come from the initial weights, so 1e-5 catches any change of a network, a loss, a
   weight or a target: a cycle weight of 10.01 instead of 10 moved them by 1e-3. After one
   update CycleGAN's spread grows: its convolution biases in front of instance norm get
   gradients that are zero up to rounding, which Adam turns into whole steps of either sign.
   The optimiser's constants are pinned exactly by the trace instead.
3. **Bits on one machine.** Two runs of one recipe, and a run against the same run stopped
   and resumed in another process, give the same bits:
   ``test_training.py::test_same_seed_same_losses_and_a_second_run_gets_its_own_directory``,
   ``test_training.py::test_resume_in_a_second_process_gives_the_same_weights``.

After a deliberate change of the operations, ``python tests/test_pinned_numerics.py`` rewrites
the trace pins for the installed torch release.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import train_tiny
from op_trace import OpTrace

from imtrans.losses import adversarial
from imtrans.training.step import TrainingStep

pytestmark = pytest.mark.floor  # CI runs these on the torch floor too

#: The pinned traces, by torch release.
TRACE_PINS = Path(__file__).with_name("pinned_op_traces.json")

#: 3 steps of each mission recipe at tiny size (conftest.train_tiny), losses of every step.
PINNED = {
    "cyclegan_photo2monet": {
        "losses": [
            {
                "D_A": 0.5493624210357666,
                "D_B": 0.6540037989616394,
                "G": 15.238187789916992,
                "G_adv": 2.5666003227233887,
                "cycle": 8.429582595825195,
                "identity": 4.24200439453125,
            },
            {
                "D_A": 0.42308077216148376,
                "D_B": 0.6267122030258179,
                "G": 12.868621826171875,
                "G_adv": 2.034036159515381,
                "cycle": 7.225517272949219,
                "identity": 3.609067678451538,
            },
            {
                "D_A": 0.43374019861221313,
                "D_B": 0.4861878454685211,
                "G": 12.708972930908203,
                "G_adv": 1.7496682405471802,
                "cycle": 7.267446041107178,
                "identity": 3.6918582916259766,
            },
        ],
    },
    "pix2pix_edges2shoes": {
        "losses": [
            {
                "D": 0.7128970623016357,
                "G": 75.05886840820312,
                "G_adv": 0.6493818163871765,
                "reconstruction": 74.40948486328125,
            },
            {
                "D": 0.7081157565116882,
                "G": 79.81851959228516,
                "G_adv": 0.6675688028335571,
                "reconstruction": 79.15094757080078,
            },
            {
                "D": 0.7037675976753235,
                "G": 79.43113708496094,
                "G_adv": 0.6608568429946899,
                "reconstruction": 78.77027893066406,
            },
        ],
    },
}


#: Relative tolerance of each step's losses, by recipe (see the module docstring).
TOLERANCE = {"cyclegan_photo2monet": [1e-5, 2e-2, 2e-2], "pix2pix_edges2shoes": [1e-5] * 3}


def _torch_release() -> str:
    return torch.__version__.split("+")[0]


def _run(tmp_path: Path, recipe: str, **overrides: object
         ) -> tuple[list[dict[str, float]], list[OpTrace]]:
    """Train 3 tiny steps of ``recipe`` on one thread; return each step's losses and trace."""
    traces: list[OpTrace] = []
    untraced = TrainingStep.__call__

    def traced(self: TrainingStep, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with OpTrace() as trace:
            terms = untraced(self, batch)
        traces.append(trace)
        return terms

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: no reduction order that depends on the machine
    # The GAN targets are cached per process: a test that ran before would spare the first
    # step its fills, and change its trace (not its numbers).
    adversarial._TARGETS.clear()
    TrainingStep.__call__ = traced  # type: ignore[method-assign]
    try:
        # The pins predate the PIL default; with the old filter nothing else moved.
        run_dir = train_tiny(tmp_path, recipe, steps=3, train__sample_every=100,
                             data__resize_filter="opencv_cubic", **overrides)
    finally:
        TrainingStep.__call__ = untraced  # type: ignore[method-assign]
        torch.set_num_threads(threads)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["losses"] for line in lines if '"losses"' in line]
    return losses, traces


def _trace_pins() -> dict[str, dict[str, object]]:
    pins: dict[str, dict[str, dict[str, object]]] = json.loads(TRACE_PINS.read_text())
    return pins.get(_torch_release(), {})


@pytest.mark.parametrize("recipe", sorted(PINNED))
def test_training_steps_run_the_pinned_operations_and_give_the_pinned_losses(
        tmp_path: Path, recipe: str) -> None:
    losses, traces = _run(tmp_path, recipe)
    assert len(losses) == len(traces) == len(PINNED[recipe]["losses"])
    for step, (got, want, tolerance) in enumerate(
            zip(losses, PINNED[recipe]["losses"], TOLERANCE[recipe], strict=True), start=1):
        assert got.keys() == want.keys()
        assert got == pytest.approx(want, rel=tolerance), f"step {step}"
    pinned = _trace_pins().get(recipe)
    if pinned is None:
        pytest.skip(f"no operation trace pinned for torch {_torch_release()} (the losses "
                    "matched); `python tests/test_pinned_numerics.py` pins one")
    counts = [trace.counts() for trace in traces]
    for step, (trace, digest, want) in enumerate(
            zip(traces, pinned["digests"], pinned["counts"], strict=True), start=1):  # type: ignore[call-overload]
        if trace.digest() != digest:
            changed = {op: (want.get(op, 0), counts[step - 1].get(op, 0))
                       for op in sorted(set(want) | set(counts[step - 1]))
                       if want.get(op, 0) != counts[step - 1].get(op, 0)}
            pytest.fail(f"step {step} of {recipe} runs other operations than pinned; counts "
                        f"changed (pinned, now): {changed or 'none: order or arguments'}")


def test_the_trace_catches_a_change_the_tolerance_misses(tmp_path: Path) -> None:
    """A learning rate 1e-4 higher moves pix2pix's losses by less than their tolerance; the
    trace of every step, which holds the rate Adam applies, differs."""
    pinned = _trace_pins().get("pix2pix_edges2shoes")
    if pinned is None:
        pytest.skip(f"no operation trace pinned for torch {_torch_release()}")
    losses, traces = _run(tmp_path, "pix2pix_edges2shoes", optim__lr=2.0002e-4)
    for got, want in zip(losses, PINNED["pix2pix_edges2shoes"]["losses"], strict=True):
        assert got == pytest.approx(want, rel=1e-5)
    assert all(t.digest() != d for t, d in zip(traces, pinned["digests"], strict=True))  # type: ignore[call-overload]


def _write_trace_pins() -> None:
    """Run each pinned recipe and write its per-step trace digests for this torch release."""
    import tempfile

    pins = json.loads(TRACE_PINS.read_text()) if TRACE_PINS.exists() else {}
    release: dict[str, object] = {}
    for recipe in sorted(PINNED):
        _, traces = _run(Path(tempfile.mkdtemp()), recipe)
        release[recipe] = {"digests": [t.digest() for t in traces],
                           "counts": [t.counts() for t in traces]}
    pins[_torch_release()] = release
    TRACE_PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    print(f"wrote {TRACE_PINS} for torch {_torch_release()}")


if __name__ == "__main__":
    _write_trace_pins()
