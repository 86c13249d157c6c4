"""Random crop and flip on the training device (kornia), paired and unpaired."""

from __future__ import annotations

import torch

from imtrans.data.device_augment import DeviceAugment


def pattern(batch: int, channels: int) -> torch.Tensor:
    """Images whose every pixel is distinct, so a crop's position and a flip can be read off."""
    return torch.arange(batch * channels * 8 * 8, dtype=torch.float32).view(batch, channels, 8, 8)


def test_paired_images_get_the_identical_crop_and_flip() -> None:
    torch.manual_seed(0)
    augment = DeviceAugment(crop_size=5, flip=True, paired=True)
    a = pattern(16, 3)
    out = augment({"A": a, "B": a[:, :1].clone(), "A_path": "kept"})
    assert out["A"].shape == (16, 3, 5, 5) and out["B"].shape == (16, 1, 5, 5)
    assert torch.equal(out["A"][:, :1], out["B"])
    assert out["A_path"] == "kept"


def test_crops_and_flips_vary_and_flip_about_half() -> None:
    torch.manual_seed(0)
    augment = DeviceAugment(crop_size=5, flip=True, paired=False)
    out = augment({"A": pattern(200, 1).clone()})["A"]
    rows = out[:, 0, 0, :]
    flipped = (rows[:, 0] > rows[:, -1]).float().mean().item()
    assert 0.35 < flipped < 0.65
    corners = {tuple(o[0, 0].tolist()) for o in out}
    assert len(corners) > 10  # many distinct crop positions


def test_unpaired_images_get_independent_transforms() -> None:
    torch.manual_seed(0)
    augment = DeviceAugment(crop_size=5, flip=True, paired=False)
    a = pattern(32, 1)
    out = augment({"A": a, "B": a.clone()})
    assert not torch.equal(out["A"], out["B"])


def test_no_flip_and_centre_crop() -> None:
    torch.manual_seed(0)
    augment = DeviceAugment(crop_size=4, flip=False, paired=True)
    out = augment({"A": pattern(50, 1)})["A"]
    assert bool((out[:, 0, 0, 0] < out[:, 0, 0, -1]).all())  # never mirrored
    centre = augment.center_crop({"A": pattern(1, 1)})["A"]
    assert torch.equal(centre, pattern(1, 1)[:, :, 2:6, 2:6])


def test_same_rng_state_same_transform() -> None:
    augment = DeviceAugment(crop_size=5, flip=True, paired=True)
    state = torch.get_rng_state()
    first = augment({"A": pattern(4, 2)})["A"]
    torch.set_rng_state(state)
    assert torch.equal(first, augment({"A": pattern(4, 2)})["A"])
