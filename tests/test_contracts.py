"""Contract tests of every registered component, a plugin's included.

The parameters are what :func:`imtrans.catalogue.plugins.load_components` finds at collection
time (the built-ins plus any installed plugin package, as ``IMTRANS_PLUGINS`` and
``IMTRANS_DISABLE_PLUGIN_AUTOLOAD`` allow), so a newly registered component is tested without
anyone adding it to a list. Components are built with small widths (``ngf``/``ndf`` 4 where the
builder takes them); one whose builder needs an argument this file cannot guess is skipped,
naming it. See :mod:`imtrans.core.contracts` for the interfaces checked.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from imtrans.catalogue.plugins import load_components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.core.contracts import CacheableDataset, is_cacheable, is_paired, size_multiple
from imtrans.core.registry import Entry, Registry, accepted_arguments
from imtrans.errors import DataError
from imtrans.losses import AdversarialLoss, GeneratorFeatureLoss
from imtrans.trainers import Trainer
from imtrans.trainers.base import ADVERSARIAL_SLOT, loss_slots

COMPONENTS = load_components()
WIDTH = 4  # ngf / ndf of every network built here
LARGEST_MULTIPLE = 128  # generators needing larger images are skipped (too slow here)
#: The members of the cache view (CacheableDataset beyond TrainingDataset).
CACHE_VIEW = ("cache_tables", "table_length", "entry_path", "load_resized", "item_positions")

#: Gaps in today's built-ins, by (kind, name, check): expected failures, reported in the
#: summary (XPASS once fixed: then remove the entry).
KNOWN_GAPS: dict[tuple[str, str, str], str] = {
    ("generators", "unet_128", "bad_size"): (
        "UnetGenerator.forward does not check the size: 1.5 x size_multiple fails inside "
        "torch.cat ('Sizes of tensors must match'), size_multiple + 1 silently gives an output "
        "of another size"),
}


def entry_id(entry: Entry) -> str:
    return entry.name if entry.source == "imtrans" else f"{entry.name}[{entry.source}]"


def entries(kind: str, check: str = "") -> list[Any]:
    """The registered entries of ``kind`` as pytest parameters, known gaps marked."""
    params = []
    for entry in COMPONENTS.registry(kind).entries():
        gap = KNOWN_GAPS.get((kind, entry.name, check)) if entry.source == "imtrans" else None
        marks = [pytest.mark.xfail(reason=gap, strict=False)] if gap else []
        params.append(pytest.param(entry, id=entry_id(entry), marks=marks))
    return params


def build(registry: Registry, entry: Entry, **wanted: Any) -> Any:
    """Build ``entry`` with those of ``wanted`` its builder accepts; skip it when it needs an
    argument without a default that ``wanted`` does not give."""
    accepted = accepted_arguments(entry.builder)
    kwargs = {k: v for k, v in wanted.items() if k in accepted}
    missing = [n for n, p in accepted.items() if p.default is p.empty and n not in kwargs]
    if missing:
        pytest.skip(f"{registry.kind} {entry.name!r} from {entry.source} needs arguments this "
                    f"contract test cannot guess: {', '.join(missing)}")
    return registry.create(entry.name, **kwargs)


def takes(entry: Entry, argument: str) -> bool:
    return argument in accepted_arguments(entry.builder)


def gradient(value: Tensor, tensor: Tensor) -> Tensor:
    (grad,) = torch.autograd.grad(value, tensor, retain_graph=True)
    return grad


def assert_useful_gradient(grad: Tensor | None, what: str) -> None:
    assert grad is not None, f"no gradient reaches {what}"
    assert torch.isfinite(grad).all(), f"the gradient w.r.t. {what} is not finite"
    assert grad.abs().sum() > 0, f"the gradient w.r.t. {what} is zero"


def assert_scalar(value: Any, what: str) -> None:
    assert isinstance(value, Tensor) and value.dim() == 0, f"{what} is not a scalar tensor"
    assert torch.isfinite(value), f"{what} is not finite: {value}"


def images(*shape: int, seed: int = 0) -> Tensor:
    """Uniform images in [-1, 1]."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- generators -----------------------------------------------------------------------------


def tiny_generator(entry: Entry) -> nn.Module:
    torch.manual_seed(0)
    return build(COMPONENTS.generators, entry, in_channels=3, out_channels=2, ngf=WIDTH)


def test_there_are_components_of_every_kind() -> None:
    for kind in ("generators", "discriminators", "losses", "trainers", "datasets"):
        assert len(COMPONENTS.registry(kind)) > 0, kind


@pytest.mark.parametrize("entry", entries("generators"))
def test_generator_maps_images_to_images_in_tanh_range(entry: Entry) -> None:
    net = tiny_generator(entry)
    declared = getattr(net, "size_multiple", 1)
    assert isinstance(declared, int) and not isinstance(declared, bool) and declared >= 1, (
        f"size_multiple must be an int >= 1, got {declared!r}")
    multiple = size_multiple(net)
    assert multiple == declared
    if multiple > LARGEST_MULTIPLE:
        pytest.skip(f"size_multiple {multiple} > {LARGEST_MULTIPLE}: too large an image here")
    side = multiple * max(1, math.ceil(16 / multiple))  # 16 px, or the multiple itself
    height, width = side, 2 * side if 2 * side <= 64 else side  # not square where cheap
    out_channels = 2 if takes(entry, "out_channels") else getattr(net, "out_channels", None)
    source = images(2, 3, height, width)
    out = net(source)
    assert out.dim() == 4 and out.shape[0] == 2 and out.shape[-2:] == (height, width), (
        f"{tuple(source.shape)} gave {tuple(out.shape)}")
    if out_channels is not None:
        assert out.shape[1] == out_channels
    assert out.is_floating_point() and torch.isfinite(out).all()
    assert out.min() >= -1 and out.max() <= 1, (out.min().item(), out.max().item())
    # The range holds whatever the input (a final tanh), and the output depends on it.
    loud = net(50 * source)
    assert loud.min() >= -1 and loud.max() <= 1, (loud.min().item(), loud.max().item())
    assert not torch.equal(net(images(2, 3, height, width, seed=1)), out)


@pytest.mark.parametrize("entry", entries("generators", "bad_size"))
def test_generator_refuses_or_documents_sizes_that_are_not_multiples(entry: Entry) -> None:
    net = tiny_generator(entry)
    multiple = size_multiple(net)
    if multiple > 1:  # a generator that takes only multiples says so where a user reads
        docs = (inspect.getdoc(type(net)) or "") + (inspect.getdoc(entry.builder) or "")
        assert "multiple" in docs, f"{entry.name}: nothing documents size_multiple {multiple}"
    if multiple > LARGEST_MULTIPLE:
        pytest.skip(f"size_multiple {multiple} > {LARGEST_MULTIPLE}: too large an image here")
    if multiple == 1:  # any size: it must really take any, odd sizes included
        out = net(images(1, 3, 17, 23))
        assert out.shape[-2:] == (17, 23)
        return
    # Given another size it either copes (same size out) or refuses clearly, naming
    # the multiple; returning another size is what the docs warn about (and the engine checks
    # the data against size_multiple before training).
    bad = (multiple + multiple // 2, multiple * 2 + 1)
    for height, width in (bad, bad[::-1]):
        try:
            out = net(images(2, 3, height, width))
        except Exception as exc:  # a clear refusal names the multiple the sides must be of
            message = str(exc)
            assert "multiple" in message and str(multiple) in message, (
                f"{height}x{width} fails without naming the size multiple {multiple}: "
                f"{type(exc).__name__}: {message}")
            continue
        assert out.dim() == 4 and out.shape[0] == 2


# --- discriminators -------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 6])
@pytest.mark.parametrize("entry", entries("discriminators"))
def test_discriminator_gives_a_patch_map_with_gradients_to_its_input(entry: Entry,
                                                                       channels: int) -> None:
    torch.manual_seed(0)
    if not takes(entry, "in_channels") and channels != 3:
        pytest.skip("the builder takes no in_channels")
    net = build(COMPONENTS.discriminators, entry, in_channels=channels, ndf=WIDTH)
    source = images(2, channels, 64, 48).requires_grad_(True)
    out = net(source)
    assert out.dim() == 4 and out.shape[:2] == (2, 1), tuple(out.shape)
    assert out.shape[2] >= 1 and out.shape[3] >= 1
    assert torch.isfinite(out).all()
    assert_useful_gradient(gradient(out.mean(), source), "the input")


# --- losses ---------------------------------------------------------------------------------


def loss_kind(loss: nn.Module) -> str:
    if isinstance(loss, AdversarialLoss):
        return "adversarial"
    if isinstance(loss, GeneratorFeatureLoss):
        return "feature"
    return "pair"  # what a trainer's pair slot calls as loss(output, target)


def small_resnet() -> nn.Module:
    torch.manual_seed(0)
    return COMPONENTS.generators.create("resnet", ngf=WIDTH)


class TinyCritic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.conv(x))


def logits(seed: int, centre: float) -> Tensor:
    """A 2 x 1 x 6 x 6 patch map of logits in ``centre`` +- 0.2."""
    return (centre + 0.2 * images(2, 1, 6, 6, seed=seed)).requires_grad_(True)


def check_adversarial(loss: AdversarialLoss) -> None:
    # A discriminator that rates fakes (+0.25) above reals (-0.25): every GAN loss must push
    # the generator's fakes up, the discriminator's reals up and its fakes down.
    fake_for_g = logits(1, 0.25)
    objective = loss.generator_loss(fake_for_g)
    assert_scalar(objective, "generator_loss")
    grad_g = gradient(objective, fake_for_g)
    assert_useful_gradient(grad_g, "the generator's fake logits")
    assert grad_g.sum() < 0, "generator_loss does not push the fake logits up"
    real, fake = logits(2, -0.25), logits(3, 0.25)
    d_loss = loss.discriminator_loss(real, fake)
    assert_scalar(d_loss, "discriminator_loss")
    grad_real, grad_fake = torch.autograd.grad(d_loss, (real, fake))
    assert_useful_gradient(grad_real, "the real logits")
    assert_useful_gradient(grad_fake, "the fake logits")
    assert grad_real.sum() < 0 < grad_fake.sum(), "D is not pushed to tell real from fake"
    critic = TinyCritic()
    penalty = loss.penalty(critic, images(2, 3, 8, 8, seed=4), images(2, 3, 8, 8, seed=5))
    if penalty is not None:
        assert_scalar(penalty, "penalty")
        penalty.backward()
        assert_useful_gradient(critic.conv.weight.grad, "the discriminator's weights (penalty)")


def check_pair(loss: nn.Module) -> None:
    target = images(2, 3, 32, 32, seed=1)
    output = images(2, 3, 32, 32, seed=2).requires_grad_(True)
    value = loss(output, target)
    assert_scalar(value, "loss(output, target)")
    assert value > 0, "a pair loss of two different images must be positive"
    assert_useful_gradient(gradient(value, output), "the output")
    same = loss(target.clone(), target)
    assert abs(same.item()) < 1e-5, f"loss(x, x) = {same.item()}, expected 0"


def check_feature(loss: GeneratorFeatureLoss) -> None:
    generator = small_resnet()
    loss.bind(generator)
    source = images(1, 3, 32, 32, seed=1)
    value = loss(generator, source, generator(source))
    assert_scalar(value, "loss(generator, source, output)")
    value.backward()
    grads = [p.grad for p in generator.parameters() if p.grad is not None]
    assert grads, "no gradient reaches the generator's parameters"
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0, "the generator's gradients are all zero"
    own = [p for p in loss.parameters() if p.requires_grad]
    for param in own:  # parameters built by bind train too
        assert param.grad is not None and torch.isfinite(param.grad).all()


CHECKS: dict[str, Callable[[Any], None]] = {
    "adversarial": check_adversarial, "pair": check_pair, "feature": check_feature}


@pytest.mark.parametrize("entry", entries("losses"))
def test_loss_has_a_finite_nonzero_gradient_for_its_kind(entry: Entry) -> None:
    torch.manual_seed(0)
    loss = build(COMPONENTS.losses, entry)
    assert isinstance(loss, nn.Module)
    CHECKS[loss_kind(loss)](loss)


@pytest.mark.parametrize("entry", entries("losses"))
def test_loss_of_weight_zero_is_zero(entry: Entry) -> None:
    if not takes(entry, "weight"):
        pytest.skip("the builder takes no weight")
    torch.manual_seed(0)
    loss = build(COMPONENTS.losses, entry, weight=0.0)
    kind = loss_kind(loss)
    if kind == "adversarial":  # the weight scales the generator's term (not the D loss)
        value = loss.generator_loss(images(2, 1, 6, 6, seed=1))
    elif kind == "feature":
        generator = small_resnet()
        loss.bind(generator)
        source = images(1, 3, 32, 32, seed=1)
        value = loss(generator, source, generator(source))
    else:
        value = loss(images(2, 3, 32, 32, seed=2), images(2, 3, 32, 32, seed=1))
    assert_scalar(value, "the loss")
    assert value.item() == 0


# --- datasets -------------------------------------------------------------------------------


def write_image(path: Path, width: int, height: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder in the usual layouts at once: train/ (A and B side by side), trainA/ and
    trainB/ (two domains); a dataset reading the whole folder finds them all."""
    root = tmp_path_factory.mktemp("images")
    for i in range(2):
        write_image(root / "train" / f"{i}.png", 80, 40, seed=i)
        write_image(root / "trainA" / f"{i}.png", 40, 40, seed=10 + i)
        write_image(root / "trainB" / f"{i}.png", 40, 40, seed=20 + i)
    return root


@pytest.mark.parametrize("entry", entries("datasets"))
def test_dataset_with_a_missing_root_names_the_folder(entry: Entry, tmp_path: Path) -> None:
    if not takes(entry, "root"):
        pytest.skip("the builder takes no root folder")
    missing = tmp_path / "no-such-dataset"
    with pytest.raises(DataError) as raised:
        build(COMPONENTS.datasets, entry, root=str(missing))
    message = str(raised.value)
    assert "\n" not in message, message
    assert str(missing) in message, message


@pytest.mark.parametrize("entry", entries("datasets", "paired"))
def test_dataset_class_declares_paired(entry: Entry) -> None:
    builder = entry.builder
    if not inspect.isclass(builder):
        pytest.skip("registered through a function, not a class")
    declared = [vars(k)["paired"] for k in builder.__mro__ if "paired" in vars(k)]
    assert declared, f"{builder.__name__} declares no `paired` class attribute"
    assert isinstance(declared[0], bool), f"paired = {declared[0]!r} is not a bool"
    assert is_paired(builder) is declared[0]


@pytest.mark.parametrize("entry", entries("datasets"))
def test_dataset_is_cacheable_exactly_when_it_offers_the_cache_view(entry: Entry,
                                                                    image_root: Path) -> None:
    try:
        data = build(COMPONENTS.datasets, entry, root=str(image_root), load_size=36,
                     crop_size=32)
    except DataError as exc:
        pytest.skip(f"does not read the usual folder layouts: {exc}")
    offers = all(callable(getattr(data, name, None)) for name in CACHE_VIEW)
    assert is_cacheable(data) is offers is isinstance(data, CacheableDataset)
    item = data[0]
    for key in ("A", "B"):
        if key in item:
            assert item[key].is_floating_point() and item[key].dim() == 3
            assert item[key].min() >= -1 and item[key].max() <= 1
    assert "A" in item and (not is_paired(data) or "B" in item)
    if not offers:
        return
    # The view the device cache reads works, and agrees with the items.
    tables = data.cache_tables()
    assert tables and all(isinstance(t, dict) and t for t in tables), tables
    positions = data.item_positions(0, torch.Generator().manual_seed(0))
    assert len(positions) == len(tables)
    for table, keys in enumerate(tables):
        assert all(isinstance(k, str) and isinstance(c, int) and c >= 1 for k, c in keys.items())
        length = data.table_length(table)
        assert length >= 1 and 0 <= positions[table] < length
        assert data.entry_path(table, 0).is_file()
        arrays, path = data.load_resized(table, 0)
        assert Path(path).is_file() and set(arrays) == set(keys)
        for key, array in arrays.items():
            assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == keys[key]
            assert key not in item or item[key].shape[0] == keys[key]


# --- trainers -------------------------------------------------------------------------------


def is_str_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


@pytest.mark.parametrize("entry", entries("trainers"))
def test_trainer_defaults_make_a_valid_recipe(entry: Entry, tmp_path: Path) -> None:
    trainer_cls = entry.builder
    assert inspect.isclass(trainer_cls) and issubclass(trainer_cls, Trainer)
    defaults = trainer_cls.recipe_defaults()
    assert isinstance(defaults, dict) and defaults
    slots = loss_slots(trainer_cls)
    assert is_str_dict(slots) and slots and all(slots.values()), slots
    assert ADVERSARIAL_SLOT in slots
    assert is_str_dict(trainer_cls.translators), trainer_cls.translators
    assert trainer_cls.translators and set(trainer_cls.translators) <= {"AtoB", "BtoA"}

    data_name = defaults.get("data", {}).get("name")
    if data_name is None:
        pytest.skip("the defaults name no dataset; the recipe cannot be completed generically")
    dataset = COMPONENTS.datasets.get(data_name)
    raw: dict[str, Any] = {"trainer": {"name": entry.name}, "data": {}}
    if takes(dataset, "root"):
        raw["data"]["root"] = str(tmp_path)  # validation reads no files
    recipe = recipe_from_dict(raw, registry=COMPONENTS)
    assert recipe.trainer.name == entry.name
    for section in ("data", "generator", "discriminator"):
        table = defaults.get(section, {})
        built = getattr(recipe, section)
        assert built.name == table.get("name", built.name)
        for key, value in table.items():
            if key != "name":
                assert getattr(built, key, built.kwargs.get(key)) == value, (section, key)
    assert set(defaults.get("losses", {})) <= set(recipe.losses)
    for key, term in defaults.get("losses", {}).items():
        assert recipe.losses[key].name == term["name"]
        assert (recipe.losses[key].on or key) in slots
    # The resolved recipe (what a run records) validates again to the same recipe.
    again = recipe_from_dict(recipe.resolved(), registry=COMPONENTS)
    assert again.resolved() == recipe.resolved()
