"""The resize filter: ``pil_bicubic`` (default) gives Pillow's BICUBIC pixels, as the official
pix2pix/CycleGAN code; ``opencv_cubic`` gives cv2.INTER_CUBIC's, as before; the device cache
resizes as the streaming path does, with either."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imtrans.catalogue.plugins import components
from imtrans.catalogue.recipe_loader import load_recipe, recipe_from_dict
from imtrans.core.observer import TrainingObserver
from imtrans.data import AlignedDataset
from imtrans.data.batches import training_data
from imtrans.data.build import build_dataset
from imtrans.data.images import image_to_array, load_image
from imtrans.data.transforms import (
    DEFAULT_RESIZE_FILTER,
    RESIZE_FILTERS,
    ImageTransform,
    build_transform,
)
from imtrans.errors import InvalidArgumentError, RecipeError
from imtrans.recipe import DataTable

ROOT = Path(__file__).resolve().parents[1]
FACADES = ROOT.parent / "shared" / "data" / "facades"
needs_facades = pytest.mark.skipif(not (FACADES / "train").is_dir(),
                                   reason="../shared/data/facades absent")
BICUBIC = Image.Resampling.BICUBIC
CPU = torch.device("cpu")


def facade_halves(count: int = 3) -> list[Image.Image]:
    """The left (A) halves of the first ``count`` facades training files, as Pillow images."""
    paths = sorted((FACADES / "train").glob("*.jpg"))[:count]
    halves = []
    for path in paths:
        image = load_image(path)
        width, height = image.size
        halves.append(image.crop((0, 0, width // 2, height)))
    return halves


def resize_transform(load_size: int, **options: typing.Any) -> ImageTransform:
    """A transform that resizes to ``load_size`` squares and crops nothing."""
    return build_transform("resize_and_crop", load_size, load_size, flip=False, paired=False,
                           **options)


def test_the_default_filter_is_pil_bicubic_everywhere() -> None:
    assert DEFAULT_RESIZE_FILTER == "pil_bicubic"
    assert resize_transform(64).resize_filter == "pil_bicubic"
    assert AlignedDataset.__init__.__kwdefaults__["resize_filter"] == "pil_bicubic"
    # The recipe schema spells the choices out (it is a leaf module): they must agree.
    field = DataTable.model_fields["resize_filter"]
    assert typing.get_args(field.annotation) == RESIZE_FILTERS
    assert field.default == DEFAULT_RESIZE_FILTER


@needs_facades
@pytest.mark.parametrize("load_size", [286, 143, 64])  # up from 256, and down (antialiased)
@pytest.mark.parametrize("channels", [3, 1])
def test_pil_bicubic_is_pillows_own_resize(load_size: int, channels: int) -> None:
    transform = resize_transform(load_size)
    for half in facade_halves():
        mode = "RGB" if channels == 3 else "L"
        expected = np.asarray(half.convert(mode).resize((load_size, load_size), BICUBIC))
        got = transform.resize(image_to_array(half, channels))
        assert got.shape == (load_size, load_size, channels)  # the channel axis is kept
        assert got.dtype == np.uint8
        assert np.array_equal(got, expected.reshape(got.shape))


@needs_facades
def test_pil_bicubic_follows_the_official_sizes_of_scale_width_and_none() -> None:
    half = facade_halves(1)[0].crop((0, 0, 255, 250))  # none rounds it to 256 x 248
    array = image_to_array(half, 3)
    for preprocess, load_size, crop_size in [("scale_width", 200, 100), ("none", 256, 256)]:
        transform = build_transform(preprocess, load_size, crop_size, flip=False, paired=False)
        height, width = transform.target_size(*array.shape[:2])
        assert (height, width) != array.shape[:2]
        expected = np.asarray(half.resize((width, height), BICUBIC))
        assert np.array_equal(transform.resize(array), expected)


@needs_facades
def test_pil_bicubic_matches_torchvision_as_the_official_code_calls_it() -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    official = transforms.Resize([286, 286], transforms.InterpolationMode.BICUBIC)
    half = facade_halves(1)[0]
    got = resize_transform(286).resize(image_to_array(half, 3))
    assert np.array_equal(got, np.asarray(official(half)))


@needs_facades
def test_resizing_channel_by_channel_is_exactly_the_rgb_resize() -> None:
    # Why other channel counts may go channel by channel: Pillow's 8-bit resampling treats
    # every band alike, so "L" planes give the "RGB" image's values bit for bit.
    for half in facade_halves():
        rgb = np.asarray(half.convert("RGB").resize((143, 301), BICUBIC))
        planes = [np.asarray(Image.fromarray(np.ascontiguousarray(
            np.asarray(half.convert("RGB"))[:, :, c])).resize((143, 301), BICUBIC))
            for c in range(3)]
        assert np.array_equal(np.stack(planes, axis=2), rgb)


@pytest.mark.parametrize("channels", [2, 4, 5])
def test_other_channel_counts_are_resized_per_channel(channels: int) -> None:
    rng = np.random.default_rng(channels)
    image = rng.integers(0, 256, (40, 30, channels), dtype=np.uint8)
    got = resize_transform(52).resize(image)
    assert got.shape == (52, 52, channels) and got.dtype == np.uint8
    assert got.flags.writeable  # torch.from_numpy (the device cache) warns on read-only arrays
    for c in range(channels):
        plane = np.asarray(Image.fromarray(image[:, :, c]).resize((52, 52), BICUBIC))
        assert np.array_equal(got[:, :, c], plane)
    if channels >= 3:
        # The colour channels are the "RGB" resize, with no "RGBA" alpha premultiplication.
        rgb = resize_transform(52).resize(np.ascontiguousarray(image[:, :, :3]))
        assert np.array_equal(got[:, :, :3], rgb)


@needs_facades
@pytest.mark.parametrize("channels", [3, 1])
def test_opencv_cubic_is_the_previous_inter_cubic_resize(channels: int) -> None:
    cv2 = pytest.importorskip("cv2")
    from albumentations.augmentations.geometric.functional import resize

    transform = resize_transform(286, resize_filter="opencv_cubic")
    for half in facade_halves():
        array = image_to_array(half, channels)
        got = transform.resize(array)
        assert got.shape == (286, 286, channels)
        assert np.array_equal(got, resize(array, (286, 286), cv2.INTER_CUBIC))
        direct = cv2.resize(array, (286, 286), interpolation=cv2.INTER_CUBIC)
        assert np.array_equal(got, direct.reshape(got.shape))  # cv2 drops an axis of 1


@needs_facades
def test_the_two_filters_differ_on_a_real_image(record_property: typing.Any) -> None:
    array = image_to_array(facade_halves(1)[0], 3)
    pil = resize_transform(286).resize(array).astype(np.int16)
    opencv = resize_transform(286, resize_filter="opencv_cubic").resize(array).astype(np.int16)
    difference = int(np.abs(pil - opencv).max())
    print(f"max |pil_bicubic - opencv_cubic| at 256 -> 286: {difference} of 255")
    record_property("max_resize_filter_difference", difference)
    assert difference > 0


def test_an_unknown_filter_is_refused_naming_the_choices() -> None:
    with pytest.raises(InvalidArgumentError, match=r"'pil_bicubic', 'opencv_cubic'.*'lanczos'"):
        resize_transform(64, resize_filter="lanczos")
    with pytest.raises(InvalidArgumentError, match="resize_filter must be one of"):
        ImageTransform("resize_and_crop", 64, 64, False, False,
                       resize_filter="area")  # type: ignore[arg-type]


def test_the_recipe_key_reaches_the_dataset() -> None:
    recipe = load_recipe(ROOT / "recipes" / "pix2pix_edges2shoes.toml",
                         ["data.resize_filter=opencv_cubic"])
    assert recipe.data.resize_filter == "opencv_cubic"
    assert recipe.data.kwargs["resize_filter"] == "opencv_cubic"
    default = load_recipe(ROOT / "recipes" / "pix2pix_edges2shoes.toml")
    assert default.data.resize_filter == "pil_bicubic"
    assert "resize_filter" not in default.data.kwargs  # a plugin dataset need not take it
    # The recipe's root is absent here: the bundled edges2shoes sample stands in.
    dataset, _ = build_dataset(recipe, components(), TrainingObserver())
    assert dataset.transform.resize_filter == "opencv_cubic"
    dataset, _ = build_dataset(default, components(), TrainingObserver())
    assert dataset.transform.resize_filter == "pil_bicubic"


def test_a_bad_recipe_value_names_the_choices() -> None:
    with pytest.raises(RecipeError, match=r"data\.resize_filter = 'bicubic'.*"
                                          r"'pil_bicubic' or 'opencv_cubic'"):
        load_recipe(ROOT / "recipes" / "pix2pix_edges2shoes.toml",
                    ["data.resize_filter=bicubic"])


def cached_images(resize_filter: str, count: int = 3) -> torch.Tensor:
    """The A images the device cache holds for the first facades files, via a recipe."""
    table = {"name": "aligned", "root": str(FACADES), "max_items": count, "load_size": 286,
             "crop_size": 256, "num_workers": 0, "cache": "device", "augment": "device",
             "preprocess": "resize_and_crop", "flip": True, "resize_filter": resize_filter}
    recipe = recipe_from_dict({"trainer": {"name": "pix2pix"}, "data": table,
                               "run": {"device": "cpu"}})
    data = training_data(recipe, components(), TrainingObserver(), CPU)
    assert data.cache is not None
    return data.cache.tables[0]["A"]


@needs_facades
@pytest.mark.parametrize("resize_filter", RESIZE_FILTERS)
def test_the_device_cache_resizes_as_the_streaming_path(resize_filter: str) -> None:
    cached = cached_images(resize_filter)
    # Streaming at crop = load size and no flip gives the resized, uncropped image.
    streamed = AlignedDataset(root=FACADES, max_items=3, load_size=286, crop_size=286,
                              flip=False, resize_filter=resize_filter)  # type: ignore[arg-type]
    for index in range(len(streamed)):
        from_cache = cached[index].to(torch.float32).div_(127.5).sub_(1.0)
        assert torch.equal(from_cache, streamed[index]["A"])
    if resize_filter == "pil_bicubic":
        expected = np.asarray(facade_halves(1)[0].resize((286, 286), BICUBIC))
        assert np.array_equal(cached[0].permute(1, 2, 0).numpy(), expected)


@needs_facades
def test_the_device_cache_filter_follows_the_recipe() -> None:
    assert not torch.equal(cached_images("pil_bicubic", 1), cached_images("opencv_cubic", 1))


def test_resuming_a_run_from_before_the_choice_says_how_to_continue_exactly(
        cyclegan_run: Path, tmp_path: Path) -> None:
    from imtrans.runs.checkpoints.files import latest_checkpoint, load_checkpoint, save_checkpoint
    from imtrans.training import checkpointing as training_checkpoint
    from imtrans.training.build import build_training

    old = load_checkpoint(latest_checkpoint(cyclegan_run / "checkpoints"))
    manifest = dict(old.manifest)
    manifest["recipe"] = {**manifest["recipe"], "data": {
        k: v for k, v in manifest["recipe"]["data"].items() if k != "resize_filter"}}
    path = save_checkpoint(tmp_path / "step_00000004.safetensors", old.tensors, manifest)
    for chosen, warned in (("pil_bicubic", True), ("opencv_cubic", False)):
        recipe = recipe_from_dict({**old.manifest["recipe"], "data": {
            **old.manifest["recipe"]["data"], "resize_filter": chosen}})
        training = build_training(recipe, device=torch.device("cpu"), data=False, speed=False)
        notes: list[str] = []
        training_checkpoint.restore(path, training.trainer, training.schedule, recipe,
                                    torch.device("cpu"), notes=notes)
        assert bool(notes) == warned
        assert not notes or "--set data.resize_filter=opencv_cubic" in notes[0]


MONET = ROOT.parent / "shared" / "data" / "monet2photo"


@pytest.mark.skipif(not (MONET / "testA").is_dir(), reason="../shared/data/monet2photo absent")
def test_evaluation_of_an_unpaired_run_resizes_with_the_recipes_filter() -> None:
    from imtrans.evaluation.testset import load_test_set

    first = sorted((MONET / "testA").iterdir())[0]
    pixels = np.asarray(Image.open(first).convert("RGB"))
    got = {}
    for chosen in ("pil_bicubic", "opencv_cubic"):
        recipe = load_recipe(ROOT / "recipes" / "cyclegan_photo2monet.toml", [
            f"data.root={MONET}", "data.direction=AtoB", "data.load_size=72",
            "data.crop_size=64", f"data.resize_filter={chosen}"])
        inputs = load_test_set(recipe, components(), max_images=1).inputs[0]
        expected = build_transform("resize_and_crop", 64, 64, False, False,
                                   resize_filter=chosen).resize(pixels)
        assert torch.equal(inputs, torch.from_numpy(expected).permute(2, 0, 1)), chosen
        got[chosen] = inputs
    assert not torch.equal(got["pil_bicubic"], got["opencv_cubic"])
