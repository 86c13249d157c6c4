"""Trainer steps, the image pool and the learning-rate schedules, on tiny tensors."""

from __future__ import annotations

import itertools

import pytest
import torch

from imtrans.catalogue.assembly import build_losses, build_trainer, summarize
from imtrans.catalogue.plugins import Components, load_components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.core.hookspecs import hookimpl
from imtrans.errors import RecipeError
from imtrans.losses import GeneratorFeatureLoss
from imtrans.nn import feature_channels, generator_features
from imtrans.recipe import ScheduleTable
from imtrans.trainers.image_pool import ImagePool
from imtrans.training.build import build_training
from imtrans.training.schedules import LRSchedule

pytestmark = pytest.mark.floor  # CI runs these on the torch floor too


@pytest.fixture(scope="module")
def builtins() -> Components:
    return load_components(autoload=False)


def tiny(trainer: str, builtins: Components, **sections: dict):
    raw = {"trainer": {"name": trainer}, "data": {"root": "unused"},
           "generator": {"ngf": 4}, "discriminator": {"ndf": 4}} | sections
    if trainer == "pix2pix":
        raw["generator"] |= {"name": "unet", "num_downs": 5}
    recipe = recipe_from_dict(raw, registry=builtins)
    return build_training(recipe, builtins, device=torch.device("cpu"), data=False,
                          speed=False).trainer


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1,
            "B": torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1}


def test_cyclegan_step_updates_all_four_networks_and_reports_terms(builtins) -> None:
    torch.manual_seed(0)
    trainer = tiny("cyclegan", builtins)
    before = {n: [p.clone() for p in m.parameters()] for n, m in trainer.modules().items()}
    out = trainer.training_step(batch())
    assert set(out) == {"D_A", "D_B", "G", "G_adv", "cycle", "identity"}
    assert all(v.requires_grad is False and torch.isfinite(v) for v in out.values())
    assert torch.allclose(out["G"], out["G_adv"] + out["cycle"] + out["identity"])
    for name, module in trainer.modules().items():
        changed = any(not torch.equal(a, b) for a, b in zip(before[name], module.parameters(),
                                                             strict=True))
        assert changed, f"{name} was not updated"
    # The discriminators are trainable again after the step (frozen only for the G update).
    assert all(p.requires_grad for p in trainer.disc_a.parameters())


def test_cyclegan_pools_fill_one_image_per_step(builtins) -> None:
    torch.manual_seed(0)
    trainer = tiny("cyclegan", builtins)
    trainer.training_step(batch(0))
    trainer.training_step(batch(1))
    assert trainer.pool_a.count == 4 and trainer.pool_b.count == 4


def test_identity_weight_zero_switches_the_term_off(builtins) -> None:
    torch.manual_seed(0)
    trainer = tiny("cyclegan", builtins, losses={"identity": {"weight": 0.0}})
    assert "identity" not in trainer.training_step(batch())


def test_pix2pix_step_reports_its_terms_and_l1_weight(builtins) -> None:
    torch.manual_seed(0)
    trainer = tiny("pix2pix", builtins)
    out = trainer.training_step(batch())
    assert set(out) == {"D", "G", "G_adv", "reconstruction"}
    assert torch.allclose(out["G"], out["G_adv"] + out["reconstruction"])
    # L1 weight 100 on images in [-1, 1]: about 100 x mean |G(a) - b|, far above 1.
    assert 20 < out["reconstruction"] < 200


def test_pix2pix_extra_term_in_the_reconstruction_slot(builtins) -> None:
    torch.manual_seed(0)
    trainer = tiny("pix2pix", builtins,
                   losses={"extra": {"name": "l1", "on": "reconstruction", "weight": 1.0}})
    out = trainer.training_step(batch())
    assert torch.allclose(out["reconstruction"] / 100, out["extra"], rtol=1e-5)
    assert torch.allclose(out["G"], out["G_adv"] + out["reconstruction"] + out["extra"])


def test_pix2pix_discriminator_is_conditional(builtins) -> None:
    trainer = tiny("pix2pix", builtins)
    assert trainer.disc.model[0].in_channels == 6


def test_image_pool_fills_then_swaps_about_half() -> None:
    torch.manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and pool.count == 4
    fresh = torch.arange(100.0, 500.0).view(-1, 1, 1, 1, 1)
    returned = torch.cat([pool.query(image) for image in fresh])
    from_history = int((returned != fresh.view(-1, 1, 1, 1)).sum())
    assert 160 < from_history < 240  # each query returns a stored image with p = 1/2


def test_image_pool_state_round_trip() -> None:
    torch.manual_seed(0)
    pool = ImagePool(3)
    pool.query(torch.rand(2, 3, 4, 4))
    restored = ImagePool(3)
    restored.load_state_tensors("p", pool.state_tensors("p"), torch.device("cpu"))
    assert restored.count == 2 and torch.equal(restored.images[:2], pool.images[:2])


def test_pool_size_zero_passes_images_through() -> None:
    images = torch.rand(2, 3, 4, 4)
    assert ImagePool(0).query(images) is images


def test_linear_schedule_matches_the_papers_formula() -> None:
    table = ScheduleTable(n_epochs=100, n_epochs_decay=100)
    schedule = LRSchedule(table, [])
    # Epoch index e trains at 1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1).
    assert schedule.factor(0) == 1.0 and schedule.factor(99) == 1.0
    assert schedule.factor(100) == pytest.approx(1 - 1 / 101)  # the first decay epoch
    assert schedule.factor(199) == pytest.approx(1 / 101)      # the last epoch
    factors = [schedule.factor(e) for e in range(200)]
    assert all(a >= b for a, b in itertools.pairwise(factors))


def test_step_cosine_and_plateau_schedules() -> None:
    step = LRSchedule(ScheduleTable(policy="step", n_epochs=2, step_size=3, gamma=0.5), [])
    assert [step.factor(e) for e in range(8)] == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    cosine = LRSchedule(ScheduleTable(policy="cosine", n_epochs=1, n_epochs_decay=4), [])
    assert [round(cosine.factor(e), 4) for e in range(6)] == [1, 1, 0.8536, 0.5, 0.1464, 0]
    plateau = LRSchedule(ScheduleTable(policy="plateau", n_epochs=0, gamma=0.1), [])
    for epoch in range(7):
        plateau.end_epoch(epoch, 1.0)  # no improvement after the first epoch
    assert plateau.factor(7) == pytest.approx(0.1)
    restored = LRSchedule(ScheduleTable(policy="plateau", n_epochs=0), [])
    restored.load_state(plateau.state())
    assert restored.state() == plateau.state()


def test_schedule_sets_the_optimiser_rate() -> None:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    schedule = LRSchedule(ScheduleTable(n_epochs=1, n_epochs_decay=1), [optimizer])
    assert schedule.begin_epoch(1) == pytest.approx(0.5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert schedule.lr == pytest.approx(1e-4)


def test_schedule_scales_each_group_from_its_own_initial_rate() -> None:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    gen = torch.optim.Adam([{"params": [params[0]]}, {"params": [params[1]], "lr": 1e-3}],
                           lr=2e-4)
    disc = torch.optim.Adam([params[2]], lr=4e-4)
    schedule = LRSchedule(ScheduleTable(n_epochs=1, n_epochs_decay=3), [gen, disc])
    for epoch, factor in [(0, 1.0), (1, 0.75), (3, 0.25), (0, 1.0)]:
        assert schedule.begin_epoch(epoch) == pytest.approx(factor)
        assert [g["lr"] for g in gen.param_groups] == pytest.approx([2e-4 * factor,
                                                                     1e-3 * factor])
        assert disc.param_groups[0]["lr"] == pytest.approx(4e-4 * factor)


class ToyFeatureLoss(GeneratorFeatureLoss):
    """A feature loss with parameters: 1x1 projections of encoder layer 4, compared by L1."""

    def __init__(self, *, weight: float = 1.0) -> None:
        super().__init__(weight=weight)
        self.proj: torch.nn.Module | None = None

    def bind(self, generator: torch.nn.Module) -> None:
        (channels,) = feature_channels(generator, [4])
        self.proj = torch.nn.Conv2d(channels, 2, 1)

    def forward(self, generator, source, output, *, flipped=False):
        (out,) = generator_features(generator, output, [4])
        (src,) = generator_features(generator, source, [4])
        return self.weight * (self.proj(out) - self.proj(src)).abs().mean()


class ToyPlugin:
    @hookimpl
    def register_losses(self, register) -> None:
        register("toy_features", ToyFeatureLoss)


@pytest.fixture(scope="module")
def with_toy() -> Components:
    return load_components(autoload=False, extra_plugins=[("toy", ToyPlugin())])


def toy_cyclegan(registry: Components):
    return tiny("cyclegan", registry,
                losses={"toy": {"name": "toy_features", "on": "features", "weight": 2.0}})


def test_cyclegan_feature_term_gets_one_trained_copy_per_generator(with_toy) -> None:
    torch.manual_seed(0)
    trainer = toy_cyclegan(with_toy)
    assert set(trainer.modules()) == {"gen_ab", "gen_ba", "disc_a", "disc_b",
                                      "loss_toy_ab", "loss_toy_ba"}
    assert set(trainer.optimizers()) == {"gen", "disc", "loss_toy_ab", "loss_toy_ba"}
    head_ab, head_ba = trainer.modules()["loss_toy_ab"], trainer.modules()["loss_toy_ba"]
    assert head_ab is not head_ba
    # One Adam per term, at the recipe's settings, over exactly the term's parameters.
    opt = trainer.optimizers()["loss_toy_ab"]
    assert opt.param_groups[0]["params"] == list(head_ab.parameters())
    assert opt.param_groups[0]["lr"] == 2e-4 and opt.param_groups[0]["betas"] == (0.5, 0.999)
    # (The biases cancel in the toy's difference: only the weights get a gradient.)
    before = [head_ab.proj.weight.clone(), head_ba.proj.weight.clone()]
    out = trainer.training_step(batch())
    after = [head_ab.proj.weight, head_ba.proj.weight]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert torch.allclose(out["G"], out["G_adv"] + out["cycle"] + out["identity"] + out["toy"])
    assert out["toy"] > 0


def test_pix2pix_feature_term_needs_a_generator_with_layers(with_toy) -> None:
    torch.manual_seed(0)
    losses = {"toy": {"name": "toy_features", "on": "features"}}
    recipe = recipe_from_dict({"trainer": {"name": "pix2pix"}, "data": {"root": "x"},
                               "generator": {"name": "resnet_6blocks", "ngf": 4},
                               "discriminator": {"ndf": 4}, "losses": losses},
                              registry=with_toy)
    trainer = build_training(recipe, with_toy, device=torch.device("cpu"), data=False).trainer
    assert "toy" in trainer.training_step(batch()) and "loss_toy" in trainer.optimizers()
    # A U-Net is a nest of blocks: validation names the term and the reason.
    recipe = recipe_from_dict({"trainer": {"name": "pix2pix"}, "data": {"root": "x"},
                               "losses": losses}, registry=with_toy)
    with pytest.raises(RecipeError, match=r"\[losses.toy\].*flat sequence"):
        summarize(recipe, with_toy)


def test_loss_kinds_must_fit_their_slots(with_toy) -> None:
    raw = {"trainer": {"name": "cyclegan"}, "data": {"root": "x"}}
    wrong_pair = recipe_from_dict(raw | {"losses": {"toy": {"name": "toy_features",
                                                            "on": "cycle"}}}, registry=with_toy)
    with pytest.raises(RecipeError, match="slot 'cycle' takes a loss comparing two images"):
        build_losses(wrong_pair, with_toy, build_trainer(wrong_pair, with_toy))
    wrong_feature = recipe_from_dict(raw | {"losses": {"extra": {"name": "l1",
                                                                 "on": "features"}}},
                                     registry=with_toy)
    with pytest.raises(RecipeError, match="slot 'features' takes a feature loss"):
        build_losses(wrong_feature, with_toy,
                     build_trainer(wrong_feature, with_toy))


def test_validate_counts_the_parameters_a_feature_term_builds(with_toy) -> None:
    recipe = recipe_from_dict({"trainer": {"name": "cyclegan"}, "data": {"root": "x"},
                               "losses": {"toy": {"name": "toy_features", "on": "features"}}},
                              registry=with_toy)
    rows = {row.role: row for row in summarize(recipe, with_toy)}
    # resnet_9blocks at ngf 64: layer 4 has 128 channels -> a 128 x 2 conv with bias.
    assert rows["losses.toy"].parameters == 128 * 2 + 2
    assert "on features" in rows["losses.toy"].detail


def test_trainable_terms_resume_exactly_from_a_checkpoint(with_toy, tmp_path) -> None:
    from imtrans.training import checkpointing as training_state
    from imtrans.training.schedules import LRSchedule

    def fresh():
        torch.manual_seed(0)
        trainer = toy_cyclegan(with_toy)
        return trainer, LRSchedule(recipe.schedule, list(trainer.optimizers().values()))

    recipe = recipe_from_dict({"trainer": {"name": "cyclegan"}, "data": {"root": "x"},
                               "generator": {"ngf": 4}, "discriminator": {"ndf": 4},
                               "losses": {"toy": {"name": "toy_features", "on": "features",
                                                  "weight": 2.0}}}, registry=with_toy)
    straight, schedule = fresh()
    for step in range(2):
        straight.training_step(batch(step))
    path = training_state.save(tmp_path, straight, schedule, 2, 10, recipe, {})
    straight.training_step(batch(2))
    resumed, schedule = fresh()
    assert training_state.restore(path, resumed, schedule, recipe, torch.device("cpu")) == 2
    resumed.training_step(batch(2))
    for name, module in straight.modules().items():
        for a, b in zip(module.parameters(), resumed.modules()[name].parameters(), strict=True):
            assert torch.equal(a, b), name
