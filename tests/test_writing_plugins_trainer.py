"""The trainer example of docs/writing-plugins.md (section 10), taken from the page itself:
registered inline as a plugin would, it validates, trains, checkpoints and resumes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import imtrans
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.samples import sample_root

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"


def _example_trainer() -> type:
    """The class defined by the first Python block of the page's section 10."""
    section = DOC.read_text(encoding="utf-8").split("## 10. A trainer of your own")[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "section 10 has no Python example"
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), str(DOC), "exec"), namespace)  # the page's own code
    return namespace["OneSidedGAN"]  # type: ignore[return-value]


class _Plugin:
    def __init__(self, trainer: type) -> None:
        self.trainer = trainer

    @imtrans.hookimpl
    def register_trainers(self, register: imtrans.RegisterFn) -> None:
        register("one_sided", self.trainer)


@pytest.fixture(scope="module")
def registry() -> imtrans.Components:
    return imtrans.load_components(autoload=False,
                                   extra_plugins=[("doc", _Plugin(_example_trainer()))])


def _recipe(registry: imtrans.Components, tmp_path: Path, **train: int) -> imtrans.Recipe:
    return recipe_from_dict({
        "trainer": {"name": "one_sided"},
        "data": {"root": str(sample_root("monet2photo")), "load_size": 36, "crop_size": 32,
                 "num_workers": 0},
        "generator": {"ngf": 4}, "discriminator": {"ndf": 4},
        "run": {"device": "cpu", "output_dir": str(tmp_path)},
        "train": {"log_every": 1, "sample_every": 100} | train,
    }, registry=registry)


def test_the_documented_trainer_trains_and_resumes_exactly(registry, tmp_path: Path) -> None:
    recipe = _recipe(registry, tmp_path / "straight", max_steps=4)
    straight = imtrans.train(recipe, registry=registry)
    assert straight.step == 4
    records = (straight.run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 4 and '"reconstruction"' in records[0] and '"G_adv"' in records[0]

    half = imtrans.train(_recipe(registry, tmp_path / "halves", max_steps=2), registry=registry)
    resumed = imtrans.train(_recipe(registry, tmp_path / "halves", max_steps=4),
                            registry=registry, resume=half.checkpoint)
    assert resumed.step == 4 and resumed.checkpoint is not None
    assert straight.checkpoint is not None
    a, b = load_file(straight.checkpoint), load_file(resumed.checkpoint)
    weights = [k for k in a if k.startswith(("net.", "optim."))]
    assert {"net.gen.model.1.weight", "optim.disc.state.0.exp_avg"} <= set(a)
    assert all(torch.equal(a[k], b[k]) for k in weights)


def test_the_documented_trainer_registers_its_optimisers_and_networks(registry,
                                                                      tmp_path: Path) -> None:
    training = imtrans.build_training(_recipe(registry, tmp_path), registry,
                                      device=torch.device("cpu"), data=False)
    assert list(training.trainer.modules()) == ["gen", "disc"]
    assert list(training.trainer.optimizers()) == ["gen", "disc"]
    assert training.trainer.terms.in_slot("reconstruction")[0][1].weight == 10.0


def test_the_documented_trainer_compiles_as_one_graph(registry, tmp_path: Path) -> None:
    from torch._dynamo.testing import CompileCounterWithBackend

    from imtrans.trainers.base import set_train_mode
    from imtrans.training.step import TrainingStep

    torch._dynamo.reset()
    training = imtrans.build_training(_recipe(registry, tmp_path), registry,
                                      device=torch.device("cpu"), data=False)
    counter = CompileCounterWithBackend("aot_eager")
    step = TrainingStep(training.trainer, compile_mode="default", backend=counter)
    set_train_mode(training.trainer)
    rows = []
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        terms = step({k: torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1
                      for k in ("A", "B")})
        rows.append(terms["G"])
    assert counter.frame_count == 1  # steps 2 and 3: one graph, no break, no recompile
    assert all(torch.isfinite(value) for value in rows)
