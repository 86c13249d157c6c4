"""The trainer contract stays narrow: ``Trainer`` has at most 16 public members, a trainer that
writes only ``networks``, ``setup`` and ``training_step`` trains, and :func:`update` does one
network group's update as the trainers did it by hand."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import imtrans
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.samples import sample_root
from imtrans.trainers import (
    AdversarialTrainer,
    DomainChannels,
    NetworkSpec,
    TrainableTerms,
    Trainer,
    discriminator_loss,
    update,
)
from imtrans.trainers.base import set_train_mode
from imtrans.trainers.optim import OptimizerFactory


def public_members(cls: type) -> set[str]:
    """Names a subclass author sees: methods, properties, class attributes and annotated
    attributes, inherited ones included, that do not start with ``_``."""
    names: set[str] = set()
    for klass in cls.__mro__[:-1]:  # not object's
        names |= {n for n in vars(klass) if not n.startswith("_")}
        names |= {n for n in vars(klass).get("__annotations__", {}) if not n.startswith("_")}
    return names


def test_the_trainer_base_class_has_at_most_16_public_members() -> None:
    members = public_members(Trainer)
    assert len(members) <= 16, sorted(members)
    # What a method author writes or calls is among them; the engine's plumbing is not.
    assert {"networks", "setup", "training_step", "sample_images", "recipe_defaults",
            "optimizer", "image_pool", "trainable_terms", "terms"} <= members
    assert not members & {"attach", "train", "pools", "state_tensors", "load_state_tensors",
                          "trainable", "slots", "adversarial_slot"}
    assert public_members(AdversarialTrainer) - members == {
        "adversarial", "generator_adversarial", "feature_terms_of"}


class Minimal(Trainer):
    """A GAN written with nothing but the three members a trainer needs."""

    gen: nn.Module
    disc: nn.Module

    def networks(self, channels: DomainChannels) -> dict[str, NetworkSpec]:
        return {"gen": NetworkSpec("generators", "generator",
                                   {"in_channels": channels.a, "out_channels": channels.b}),
                "disc": NetworkSpec("discriminators", "discriminator",
                                    {"in_channels": channels.b})}

    def setup(self) -> None:
        self.gan = self.terms.only("adversarial")
        self.opt_gen = self.optimizer("gen", [self.gen])
        self.opt_disc = self.optimizer("disc", [self.disc])

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fake = self.gen(batch["A"])
        loss_d = update(self.opt_disc, loss=lambda: discriminator_loss(
            self.gan, self.disc, batch["B"], fake, 0.5))
        loss_g = update(self.opt_gen, frozen=[self.disc],
                        loss=lambda: self.gan.generator_loss(self.disc(fake)))
        return {"D": loss_d.detach(), "G": loss_g.detach()}


class _Plugin:
    @imtrans.hookimpl
    def register_trainers(self, register: imtrans.RegisterFn) -> None:
        register("minimal", Minimal)


@pytest.fixture(scope="module")
def registry() -> imtrans.Components:
    return imtrans.load_components(autoload=False, extra_plugins=[("minimal", _Plugin())])


def _recipe(registry: imtrans.Components, tmp_path: Path) -> imtrans.Recipe:
    """Every table stated: the minimal trainer brings no recipe defaults."""
    return recipe_from_dict({
        "trainer": {"name": "minimal"},
        "data": {"name": "unaligned", "root": str(sample_root("monet2photo")), "load_size": 36,
                 "crop_size": 32, "num_workers": 0},
        "generator": {"name": "resnet_6blocks", "ngf": 4},
        "discriminator": {"name": "patchgan", "ndf": 4},
        "losses": {"adversarial": {"name": "lsgan"}},
        "run": {"device": "cpu", "output_dir": str(tmp_path)},
        "train": {"log_every": 1, "sample_every": 2, "max_steps": 2},
    }, registry=registry)


def test_a_trainer_of_networks_setup_and_training_step_trains(registry, tmp_path: Path) -> None:
    # Besides the annotations of its networks' types, it defines these three and nothing else.
    assert {n for n in vars(Minimal) if not n.startswith("_")} == {
        "networks", "setup", "training_step"}
    training = imtrans.build_training(_recipe(registry, tmp_path), registry,
                                      device=torch.device("cpu"), data=False)
    trainer = training.trainer
    set_train_mode(trainer)
    before = {n: [p.detach().clone() for p in m.parameters()]
              for n, m in trainer.modules().items()}
    generator = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1 for k in ("A", "B")}
    terms = training.step(batch)
    assert set(terms) == {"D", "G"} and all(torch.isfinite(v) for v in terms.values())
    for name, module in trainer.modules().items():  # both groups stepped
        assert any(not torch.equal(a, b) for a, b in zip(before[name], module.parameters(),
                                                         strict=True)), name
    # The discriminator, frozen for the generator's update, has its requires_grad back.
    assert all(p.requires_grad for p in trainer.modules()["disc"].parameters())


def test_the_minimal_trainer_runs_from_a_recipe_with_the_default_samples(
        registry, tmp_path: Path) -> None:
    result = imtrans.train(_recipe(registry, tmp_path), registry=registry)
    assert result.step == 2 and result.checkpoint is not None
    records = [json.loads(line) for line in
               (result.run_dir / "metrics.jsonl").read_text().splitlines() if '"losses"' in line]
    assert [set(r["losses"]) for r in records] == [{"D", "G"}] * 2
    # No translators and no sample_images of its own: the grid shows the batch.
    labels = json.loads(next((result.run_dir / "samples").glob("step_*.json")).read_text())
    assert labels == {"columns": ["real A", "real B"]}


def _heads(factory: OptimizerFactory) -> TrainableTerms:
    return TrainableTerms([("toy", nn.Linear(1, 1))], factory)


def test_update_freezes_clears_backwards_and_steps_like_the_calls_it_replaces() -> None:
    torch.manual_seed(0)
    net, critic = nn.Linear(2, 1), nn.Linear(1, 1)
    factory = OptimizerFactory(lr=0.1, betas=(0.5, 0.999))
    opt = factory([net])
    heads = _heads(factory)
    head = heads.terms["toy"]
    critic.weight.grad = torch.ones_like(critic.weight)  # left from its own update
    x = torch.ones(4, 2)

    def objective() -> tuple[torch.Tensor, dict[str, Any]]:
        loss = critic(net(x)).mean() + head(torch.ones(1, 1)).sum()
        return loss, {"seen": critic.weight.requires_grad}

    # The same update by hand, on copies.
    net2, critic2 = nn.Linear(2, 1), nn.Linear(1, 1)
    net2.load_state_dict(net.state_dict())
    critic2.load_state_dict(critic.state_dict())
    opt2 = torch.optim.Adam(net2.parameters(), lr=0.1, betas=(0.5, 0.999))
    head2 = nn.Linear(1, 1)
    head2.load_state_dict(head.state_dict())
    opt_head2 = torch.optim.Adam(head2.parameters(), lr=0.1, betas=(0.5, 0.999))

    loss, extra = update(opt, heads, frozen=[critic], loss=objective)

    critic2.requires_grad_(False)
    opt2.zero_grad(set_to_none=True)
    opt_head2.zero_grad(set_to_none=True)
    loss2 = critic2(net2(x)).mean() + head2(torch.ones(1, 1)).sum()
    loss2.backward()
    opt2.step()
    opt_head2.step()

    assert extra == {"seen": False}  # frozen while the loss ran
    assert critic.weight.requires_grad and critic.bias.requires_grad  # given back after
    assert torch.equal(critic.weight.grad, torch.ones_like(critic.weight))  # no gradient came
    assert torch.equal(loss, loss2)
    for mine, theirs in [(net, net2), (head, head2)]:
        for a, b in zip(mine.parameters(), theirs.parameters(), strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(net.weight, torch.zeros_like(net.weight))


def test_update_gives_frozen_networks_their_flags_back_when_the_loss_raises() -> None:
    net, critic = nn.Linear(1, 1), nn.Linear(1, 1)
    critic.bias.requires_grad_(False)  # frozen on purpose before: stays frozen

    def failing() -> torch.Tensor:
        raise RuntimeError("no loss")

    with pytest.raises(RuntimeError, match="no loss"):
        update(torch.optim.Adam(net.parameters()), frozen=[critic], loss=failing)
    assert critic.weight.requires_grad and not critic.bias.requires_grad


def test_the_members_that_left_the_trainer_still_work_with_a_warning(registry,
                                                                       tmp_path: Path) -> None:
    trainer = imtrans.build_training(_recipe(registry, tmp_path), registry,
                                     device=torch.device("cpu"), data=False).trainer
    with pytest.warns(DeprecationWarning, match="Trainer.trainable is deprecated"):
        assert trainer.trainable.modules() == {}
    with pytest.warns(DeprecationWarning, match="set_train_mode"):
        trainer.train(False)
    assert not any(m.training for m in trainer.modules().values())
    with pytest.warns(DeprecationWarning):
        assert trainer.adversarial_slot == "adversarial"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no attribute 'nothing'"):
            _ = trainer.nothing
