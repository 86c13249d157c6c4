"""A generator laid out on the meta device takes the checkpoint's tensors as its own
(`assign_module_tensors`), so `load_translator` builds it once and initialises nothing the
checkpoint replaces; a network with tensors of its own is built and loaded as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import imtrans.inference.translator as translator_module
from imtrans.core.state_tensors import assign_module_tensors, module_tensors
from imtrans.inference import load_translator
from imtrans.runs.checkpoints.files import load_checkpoint
from imtrans.runs.checkpoints.lookup import find_checkpoint

pytestmark = pytest.mark.floor


def _meta(build: type[nn.Module] | object, *args: object) -> nn.Module:
    with torch.device("meta"):
        return build(*args)  # type: ignore[operator]


def test_a_meta_network_takes_the_checkpoint_s_tensors() -> None:
    source = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    tensors = module_tensors("gen", source)
    layout = _meta(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    assert assign_module_tensors("gen", layout, tensors)
    state = layout.state_dict()
    assert all(torch.equal(state[key], source.state_dict()[key]) for key in state)
    assert not any(t.is_meta for t in state.values())
    assert isinstance(layout[0].weight, nn.Parameter) and layout[0].weight.requires_grad
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(layout.eval()(x), source.eval()(x), rtol=0, atol=0)


class _OwnBuffer(nn.Module):
    """A layer whose constructor computes a buffer that no checkpoint holds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.register_buffer("scale", torch.full((1,), 0.5), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale


class _PlainAttribute(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.kernel = torch.ones(3)  # a tensor in a plain attribute: not in any state dict


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
        self.second.weight = self.first.weight


@pytest.mark.parametrize("network", [_OwnBuffer, _PlainAttribute, _Tied])
def test_networks_with_tensors_of_their_own_are_refused(network: type[nn.Module]) -> None:
    assert not assign_module_tensors("gen", _meta(network), module_tensors("gen", network()))


def test_other_keys_shapes_or_types_are_refused() -> None:
    tensors = module_tensors("gen", nn.Conv2d(3, 4, 3))
    assert not assign_module_tensors("gen", _meta(nn.Conv2d, 3, 4, 1), tensors)  # shape
    assert not assign_module_tensors("gen", _meta(nn.Conv2d, 3, 4, 3, 1, 0, 1, 1, False),
                                     tensors)  # no bias: another key set
    halves = {key: value.half() for key, value in tensors.items()}
    assert not assign_module_tensors("gen", _meta(nn.Conv2d, 3, 4, 3), halves)  # type


def test_load_translator_builds_the_generator_once_with_the_checkpoint_s_weights(
        cyclegan_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[str] = []
    create = translator_module.create_component

    def counted(*args: object, **kwargs: object) -> nn.Module:
        builds.append("build")
        return create(*args, **kwargs)

    monkeypatch.setattr(translator_module, "create_component", counted)
    translator = load_translator(cyclegan_run, device="cpu")
    assert builds == ["build"]  # the meta layout only
    stored = load_checkpoint(find_checkpoint(cyclegan_run)).tensors
    state = translator.generator.state_dict()
    assert all(torch.equal(value, stored[f"net.gen_ab.{key}"]) for key, value in state.items())
    # Copies in memory torch allocated (aligned), not the file's own tensors.
    assert all(value.data_ptr() % 64 == 0
               and value.data_ptr() != stored[f"net.gen_ab.{key}"].data_ptr()
               for key, value in state.items())


def test_a_generator_with_a_buffer_of_its_own_is_built_and_loaded(
        cyclegan_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = load_translator(cyclegan_run, device="cpu")
    create = translator_module.create_component

    def with_buffer(*args: object, **kwargs: object) -> nn.Module:
        network = create(*args, **kwargs)
        # A constant the constructor computes (1.0: the outputs must not change), used by
        # forward: left on the meta device, the translation would fail.
        network.register_buffer("gain", torch.ones(1), persistent=False)
        network.register_forward_hook(lambda module, inputs, output: output * module.gain)
        return network

    monkeypatch.setattr(translator_module, "create_component", with_buffer)
    translator = load_translator(cyclegan_run, device="cpu")
    assert not translator.generator.gain.is_meta
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(translator(images), reference(images), rtol=0, atol=0)
