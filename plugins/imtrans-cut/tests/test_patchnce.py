"""The PatchNCE loss and its head, on tiny ResNet generators (run after `pip install`)."""

from __future__ import annotations

import math

import pytest
import torch
from imtrans_cut import PatchNCELoss, PatchSampleHead, patch_nce_loss

import imtrans
from imtrans.nn import resnet, unet


def tiny_generator(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return resnet(ngf=4, n_blocks=9)  # layer 16 is the 7th residual block, as in CUT


def images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def seeded(loss: PatchNCELoss, *args, **kwargs) -> float:
    """The loss with the patch positions drawn from one fixed seed, to compare outputs."""
    torch.manual_seed(123)
    with torch.no_grad():
        return loss(*args, **kwargs).item()


def test_pure_loss_matches_its_formula_for_orthogonal_patches() -> None:
    keys = torch.eye(8).unsqueeze(0)  # 8 orthogonal unit patches of one image
    t = 0.5  # large enough for float32 to resolve the formula
    # Positive similarity 1, negatives 0, and the masked diagonal at -10.
    expected = -1 / t + math.log(math.exp(1 / t) + 7 + math.exp(-10 / t))
    assert patch_nce_loss(keys, keys, temperature=t).item() == pytest.approx(expected, rel=1e-5)
    # Equal similarities everywhere: chance level, log of the 8 candidates.
    same = torch.ones(1, 8, 4) / 2
    assert patch_nce_loss(same, same, temperature=t).item() == pytest.approx(math.log(8),
                                                                              rel=1e-5)
    # Negatives from the whole batch: two images of 4 patches give 8 candidates, not 4.
    pair = torch.eye(8).view(2, 4, 8)
    own = -1 / t + math.log(math.exp(1 / t) + 3 + math.exp(-10 / t))
    assert patch_nce_loss(pair, pair, temperature=t).item() == pytest.approx(own, rel=1e-5)
    assert patch_nce_loss(pair, pair, temperature=t, negatives_from_minibatch=True).item() == \
        pytest.approx(expected, rel=1e-5)


def test_near_its_minimum_when_the_generator_is_the_identity_and_the_head_is_fixed() -> None:
    gen = tiny_generator()
    loss = PatchNCELoss(num_patches=64)
    loss.bind(gen)
    x = images(0)
    at_identity = seeded(loss, gen, x, x)  # as if G(x) = x
    # Far below chance (all similarities equal: log 64 = 4.16)...
    assert at_identity < 0.2 * math.log(64)
    # ... every small move away from the identity raises it ...
    noise = torch.Generator().manual_seed(1)
    for _ in range(4):
        moved = x + 0.05 * torch.randn(x.shape, generator=noise)
        assert seeded(loss, gen, x, moved) > at_identity
    # ... and an unrelated output is above chance.
    assert seeded(loss, gen, x, images(5)) > math.log(64)


def test_flip_equivariance_compares_the_output_flipped_back() -> None:
    # Layer 0 (reflection padding of the input) commutes with flipping, so with flipped=True
    # a flipped copy of x scores exactly as x itself; without it, it is far off.
    gen = tiny_generator()
    loss = PatchNCELoss(layers=(0,), num_patches=64)
    loss.bind(gen)
    x = images(0)
    same = seeded(loss, gen, x, x)
    assert seeded(loss, gen, x, x.flip(3), flipped=True) == pytest.approx(same, rel=1e-5)
    assert seeded(loss, gen, x, x.flip(3)) > 3 * same


def test_gradients_reach_the_generator_and_the_head() -> None:
    gen = tiny_generator()
    loss = PatchNCELoss(num_patches=32, weight=10.0)
    loss.bind(gen)
    x = images(0)
    value = loss(gen, x, gen(x))
    value.backward()
    assert value.item() > 0
    first_conv = gen.model[1].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    for name, param in loss.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_head_matches_cut_netf_size_and_initialisation() -> None:
    torch.manual_seed(0)
    gen = resnet(n_blocks=9)  # full size, ngf 64: channels 3, 128, 256, 256, 256
    loss = PatchNCELoss()
    loss.bind(gen)
    assert [mlp[0].in_features for mlp in loss.head.mlps] == [3, 128, 256, 256, 256]
    assert sum(p.numel() for p in loss.parameters()) == 560_384
    weight = loss.head.mlps[1][0].weight
    assert weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert loss.head.mlps[1][0].bias.abs().sum() == 0


def test_head_reuses_the_source_positions_for_the_output() -> None:
    head = PatchSampleHead([3], out_channels=8)
    feats = [torch.randn(2, 3, 6, 6)]
    keys, ids = head(feats, 10)
    again, same_ids = head(feats, 10, ids)
    assert torch.equal(ids[0], same_ids[0]) and len(set(ids[0].tolist())) == 10
    assert torch.allclose(keys[0], again[0])
    assert torch.allclose(keys[0].norm(dim=2), torch.ones(2, 10), atol=1e-3)
    assert head(feats, 100)[0][0].shape == (2, 36, 8)  # fewer positions than asked: all


def test_generators_without_layers_and_bad_arguments_are_refused() -> None:
    with pytest.raises(imtrans.InvalidArgumentError, match="flat sequence"):
        PatchNCELoss().bind(unet(num_downs=5, ngf=4))
    with pytest.raises(imtrans.InvalidArgumentError, match="out of range"):
        PatchNCELoss(layers=(0, 99)).bind(tiny_generator())
    with pytest.raises(imtrans.InvalidArgumentError, match="bind"):
        PatchNCELoss()(tiny_generator(), images(0), images(0))
    with pytest.raises(imtrans.InvalidArgumentError, match="num_patches"):
        PatchNCELoss(num_patches=0)
    with pytest.raises(imtrans.InvalidArgumentError, match="temperature"):
        PatchNCELoss(temperature=0.0)
