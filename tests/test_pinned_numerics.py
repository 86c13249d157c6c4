"""Training numbers pinned before the loop and trainer redesign: a few CycleGAN and pix2pix
steps on a fixed seed must give these losses and these weights, bit for bit.

The pins were taken with the code before the redesign, on the CPU with one thread. A change
that moves any bit of any loss, weight or optimiser moment fails here. Bits depend on the
torch release (kernels change between releases) and on the vector instructions the CPU gives
torch's kernels, so bits are pinned for the release they were taken on and per CPU capability
(AVX2, AVX512); under another release or CPU only the losses are compared, to 1e-5.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from conftest import train_tiny
from safetensors.torch import load_file

#: The torch release the hashes below were taken on.
PINNED_TORCH = "2.14.1"

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
        "weights": "8de703747d233b161af4ee1631ac57bc4517190c295bc6d41b5621c6031bfeb9",
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
        "weights": "3d7bb51d4fe77764b825b5c602a23fc79f1dce163c017661d52e51dd6e295658",
    },
}


#: The same runs on a CPU with AVX-512 (torch's "AVX512" kernels), taken with the code of
#: the pins above: wider vectorised kernels sum in another order, which moves the last
#: bits of a float.
PINNED_AVX512 = {
    "cyclegan_photo2monet": {
        "losses": [
            {
                "D_A": 0.5493623614311218,
                "D_B": 0.6540037393569946,
                "G": 15.238187789916992,
                "G_adv": 2.5666003227233887,
                "cycle": 8.429582595825195,
                "identity": 4.24200439453125
            },
            {
                "D_A": 0.4230799078941345,
                "D_B": 0.6267122030258179,
                "G": 12.868622779846191,
                "G_adv": 2.0340373516082764,
                "cycle": 7.225517272949219,
                "identity": 3.609067678451538
            },
            {
                "D_A": 0.4337390065193176,
                "D_B": 0.48618796467781067,
                "G": 12.708963394165039,
                "G_adv": 1.7496589422225952,
                "cycle": 7.267446517944336,
                "identity": 3.6918582916259766
            }
        ],
        "weights": "d9ab32e31ce442f743bc2059bc963dcc9a785571787896157d9641db1c0dec43"
    },
    "pix2pix_edges2shoes": {
        "losses": [
            {
                "D": 0.7128969430923462,
                "G": 75.05887603759766,
                "G_adv": 0.6493818163871765,
                "reconstruction": 74.40949249267578
            },
            {
                "D": 0.708115816116333,
                "G": 79.81851959228516,
                "G_adv": 0.6675688028335571,
                "reconstruction": 79.15094757080078
            },
            {
                "D": 0.7037675380706787,
                "G": 79.43112182617188,
                "G_adv": 0.6608568429946899,
                "reconstruction": 78.770263671875
            }
        ],
        "weights": "e8c9cfec2f1b3957e9fdbec36879cca952a4f35b010a9ff812b5b8dad9f92f90"
    }
}

#: Pins by the kernels torch picks for this CPU (torch.backends.cpu.get_cpu_capability()).
PINS_BY_CPU = {"AVX2": PINNED, "AVX512": PINNED_AVX512}


def _digest(tensors: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> str:
    """sha256 over the named tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        if not name.startswith(prefixes):
            continue
        tensor = tensors[name].contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _run(tmp_path: Path, recipe: str) -> tuple[list[dict[str, float]], str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: no reduction order that depends on the machine
    try:
        # The pins predate the PIL default; with the old filter nothing else moved.
        run_dir = train_tiny(tmp_path, recipe, steps=3, train__sample_every=100,
                             data__resize_filter="opencv_cubic")
    finally:
        torch.set_num_threads(threads)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["losses"] for line in lines if '"losses"' in line]
    checkpoint = sorted((run_dir / "checkpoints").glob("step_*.safetensors"))[-1]
    return losses, _digest(load_file(checkpoint), ("net.", "optim.", "trainer."))


@pytest.mark.parametrize("recipe", sorted(PINNED))
def test_training_steps_give_the_pinned_losses_and_weights(tmp_path: Path, recipe: str) -> None:
    losses, weights = _run(tmp_path, recipe)
    by_cpu = PINS_BY_CPU.get(torch.backends.cpu.get_cpu_capability())
    exact = torch.__version__.split("+")[0] == PINNED_TORCH and by_cpu is not None
    pinned = by_cpu[recipe] if exact and by_cpu is not None else PINNED[recipe]
    assert pinned["losses"] is not None, f"pin {recipe}: losses={losses!r} weights={weights!r}"
    assert len(losses) == len(pinned["losses"])
    for got, want in zip(losses, pinned["losses"], strict=True):
        assert got.keys() == want.keys()
        if exact:
            assert got == want  # bit for bit: the same floats, printed the same
        else:
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    if exact:
        assert weights == pinned["weights"]
