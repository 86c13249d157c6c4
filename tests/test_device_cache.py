"""The device image cache: decoded once, cropped and flipped exactly, chosen by data.cache."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imtrans.catalogue.plugins import components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.core.contracts import is_cacheable
from imtrans.core.observer import TrainingObserver
from imtrans.data import AlignedDataset, SingleDataset, SkippedImageWarning, UnalignedDataset
from imtrans.data.batches import CachedBatches, StreamedBatches, training_data
from imtrans.data.device_cache import DeviceImageCache, cache_bytes
from imtrans.errors import RecipeError

CPU = torch.device("cpu")


def noise_images(folder: Path, count: int, size: tuple[int, int], seed: int) -> list[Path]:
    """``count`` random RGB JPEGs of ``size`` (width, height) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        paths.append(folder / f"{i:03d}.png")  # lossless: the values are known exactly
        Image.fromarray(pixels).save(paths[-1])
    return paths


def crop_of(full: torch.Tensor, top: int, left: int, flip: int, size: int) -> torch.Tensor:
    out = full[..., top:top + size, left:left + size]
    return out.flip(-1) if flip else out


def test_a_cached_batch_is_the_streamed_image_cropped_at_the_drawn_place(tmp_path: Path) -> None:
    noise_images(tmp_path / "train", 5, (80, 40), seed=1)  # A | B, 40x40 each
    # The streaming dataset at crop = load size and no flip gives the resized, uncropped item.
    full = AlignedDataset(root=tmp_path, load_size=36, crop_size=36, flip=False)
    cache = DeviceImageCache.fill(full, CPU, load_size=36, crop_size=32, flip=True)
    items = [[(4, 14), (0, 16)], [(2, 17), (1, 18)], [(3, 19)]]
    plan = cache.plan(items)
    assert plan.bounds == [(0, 2), (2, 4), (4, 5)]
    assert set(plan.draws[:, 0, 3].tolist()) == {0, 1}  # these seeds flip some, not all
    for number, batch_items in enumerate(items):
        batch = cache.batch(plan, number)
        assert batch["A"].shape == (len(batch_items), 3, 32, 32)
        assert batch["A"].dtype == torch.float32
        for row, (index, _) in enumerate(batch_items):
            entry, top, left, flip = plan.draws[plan.bounds[number][0] + row, 0].tolist()
            assert entry == index
            item = full[index]
            # Bit for bit the floats the streaming path makes, and one crop for A and B.
            assert torch.equal(batch["A"][row], crop_of(item["A"], top, left, flip, 32))
            assert torch.equal(batch["B"][row], crop_of(item["B"], top, left, flip, 32))
    flips = cache.plan([[(i % 5, 1000 + i)] for i in range(40)]).draws[:, 0, 3]
    assert 5 < int(flips.sum()) < 35  # about half the crops are flipped


def test_unpaired_domains_get_their_own_entries_and_crops(tmp_path: Path) -> None:
    noise_images(tmp_path / "trainA", 3, (40, 40), seed=2)
    noise_images(tmp_path / "trainB", 7, (40, 40), seed=3)
    data = UnalignedDataset(root=tmp_path, load_size=36, crop_size=32)
    assert data.cache_tables() == [{"A": 3}, {"B": 3}]
    cache = DeviceImageCache.fill(data, CPU, load_size=36, crop_size=32, flip=True)
    items = [[(i, 100 + i)] for i in range(len(data))]
    plan = cache.plan(items)
    draws = plan.draws
    assert draws[:, 0, 0].tolist() == [i % 3 for i in range(7)]  # A in order
    assert len(set(draws[:, 1, 0].tolist())) > 1  # B drawn at random
    assert not torch.equal(draws[:, 0, 1:], draws[:, 1, 1:])  # independent crops
    # The draws depend on the items' seeds alone, and leave the global RNG alone.
    state = torch.get_rng_state()
    assert torch.equal(cache.plan(items).draws, draws)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(cache.plan([[(i, 200 + i)] for i in range(7)]).draws, draws)
    full_b = UnalignedDataset(root=tmp_path, load_size=36, crop_size=36, flip=False,
                              serial=True)
    batch = cache.batch(plan, 5)
    entry_b, top, left, flip = draws[5, 1].tolist()
    reference = full_b[entry_b]["B"]  # serial: item i of 7 takes B[i]
    assert torch.equal(batch["B"][0], crop_of(reference, top, left, flip, 32))


def test_each_file_is_decoded_once_and_workers_give_the_same_images(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    noise_images(tmp_path / "photos", 6, (30, 20), seed=4)
    data = SingleDataset(root=tmp_path / "photos", preprocess="resize_and_crop",
                         load_size=24, crop_size=16)
    assert is_cacheable(data) and cache_bytes(data, 24) == 6 * 3 * 24 * 24
    calls: list[tuple[int, int]] = []
    original = SingleDataset.load_resized

    def counted(self: SingleDataset, table: int, position: int):  # type: ignore[no-untyped-def]
        calls.append((table, position))
        return original(self, table, position)

    monkeypatch.setattr(SingleDataset, "load_resized", counted)
    alone = DeviceImageCache.fill(data, CPU, load_size=24, crop_size=16, flip=False)
    assert sorted(calls) == [(0, p) for p in range(6)]
    assert alone.nbytes == cache_bytes(data, 24)
    monkeypatch.setattr(SingleDataset, "load_resized", original)
    parallel = DeviceImageCache.fill(data, CPU, load_size=24, crop_size=16, flip=False,
                                     num_workers=2)
    assert torch.equal(parallel.tables[0]["A"], alone.tables[0]["A"])


def test_an_unusable_file_is_skipped_and_counted(tmp_path: Path) -> None:
    paths = noise_images(tmp_path / "photos", 3, (20, 20), seed=5)
    paths[1].write_bytes(b"not an image")
    data = SingleDataset(root=tmp_path / "photos", preprocess="resize_and_crop",
                         load_size=20, crop_size=20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = DeviceImageCache.fill(data, CPU, load_size=20, crop_size=20, flip=False)
    assert cache.skipped == [str(paths[1])]
    assert any(issubclass(w.category, SkippedImageWarning) and str(paths[1]) in str(w.message)
               for w in caught)
    images = cache.tables[0]["A"]
    assert torch.equal(images[1], images[2])  # the next usable file stands in, as streaming


def recipe(tmp_path: Path, **data: object) -> object:
    noise_images(tmp_path / "d" / "train", 4, (80, 40), seed=6)
    table = {"name": "aligned", "root": str(tmp_path / "d"), "load_size": 36,
             "crop_size": 32, "num_workers": 0} | data
    return recipe_from_dict({"trainer": {"name": "pix2pix"}, "data": table,
                             "run": {"device": "cpu"}})


def test_data_cache_picks_where_the_images_live(tmp_path: Path) -> None:
    registry, observer = components(), TrainingObserver()
    # auto streams on the CPU (no GPU memory to save work with); device caches anywhere.
    auto = training_data(recipe(tmp_path), registry, observer, CPU)
    assert isinstance(auto.batches, StreamedBatches) and auto.cache is None
    cached = training_data(recipe(tmp_path, cache="device"), registry, observer, CPU)
    assert isinstance(cached.batches, CachedBatches)
    assert cached.cache is not None and cached.cache.crop_size == 32 and cached.cache.flip
    # With augment = "device" the dataset leaves crop and flip to the device: same settings.
    both = training_data(recipe(tmp_path, cache="device", augment="device", flip=True,
                                preprocess="resize_and_crop"), registry, observer, CPU)
    assert both.cache is not None and both.cache.crop_size == 32 and both.cache.flip
    with pytest.raises(RecipeError, match='preprocess = "resize_and_crop"'):
        training_data(recipe(tmp_path, cache="device", preprocess="crop"), registry,
                      observer, CPU)


def test_cached_batches_shard_and_resume_like_the_sampler(tmp_path: Path) -> None:
    registry, observer = components(), TrainingObserver()
    ranks = [training_data(recipe(tmp_path, cache="device", batch_size=1), registry,
                           observer, CPU, rank=r, world_size=2) for r in range(2)]
    for data in ranks:
        data.batches.set_epoch(0)
    epoch = [[b["A"] for b in data.batches] for data in ranks]
    assert [len(e) for e in epoch] == [2, 2]  # 4 items, global batch 2
    assert not torch.equal(epoch[0][0], epoch[1][0])  # disjoint shares
    ranks[1].batches.set_epoch(0, start=1)
    assert torch.equal(next(iter(ranks[1].batches))["A"], epoch[1][1])
    fixed = ranks[0].fixed_batch(2, seed=0, device=CPU)
    assert fixed["A"].shape == (2, 3, 32, 32)
    full = AlignedDataset(root=tmp_path / "d", load_size=36, crop_size=36, flip=False)
    assert torch.equal(fixed["A"][1], full[1]["A"][:, 2:34, 2:34])  # the centre, unflipped


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cached_batch_needs_no_host_synchronisation(tmp_path: Path) -> None:
    noise_images(tmp_path / "train", 4, (80, 40), seed=7)
    data = AlignedDataset(root=tmp_path, load_size=36, crop_size=36, flip=False)
    cache = DeviceImageCache.fill(data, torch.device("cuda"), load_size=36, crop_size=32,
                                  flip=True)
    plan = cache.plan([[(0, 1), (1, 2)], [(2, 3), (3, 4)]])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = [cache.batch(plan, n) for n in range(2)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(batches[1]["A"][0].cpu(),
                       cache.batch(cache.plan([[(2, 3)]]), 0)["A"][0].cpu())
