"""The memory budget's largest-layer count, kept in the user cache
(`imtrans.inference.activation_peak`): measured once per network shape and size, read back
after, measured again for another shape, size or a damaged entry, never an error when the
cache cannot be written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import imtrans.inference.activation_peak as activation_peak
from imtrans.inference.activation_peak import (
    cached_peak_activation_values,
    network_fingerprint,
    peak_activation_values,
)
from imtrans.inference.budget import ImageBudget

pytestmark = pytest.mark.floor


def _network(width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, 3, 3, padding=1))


@pytest.fixture()
def measured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[int, int]]:
    """The sizes :func:`peak_activation_values` measured, with the cache in ``tmp_path``."""
    monkeypatch.setenv("IMTRANS_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[tuple[int, int]] = []
    measure = activation_peak.peak_activation_values

    def counting(generator: nn.Module, channels: int, height: int, width: int,
                 batch: int = 1) -> int:
        calls.append((height, width))
        return measure(generator, channels, height, width, batch)

    monkeypatch.setattr(activation_peak, "peak_activation_values", counting)
    return calls


def test_a_network_is_measured_once_per_size_and_read_back_after(
        measured: list[tuple[int, int]], tmp_path: Path) -> None:
    # The largest layer: the ReLU's 8-channel input and output.
    assert peak_activation_values(_network(), 3, 16, 20) == 2 * 8 * 16 * 20
    first = cached_peak_activation_values(_network(), 3, 16, 20)
    again = cached_peak_activation_values(_network(), 3, 16, 20)  # a new, equal network
    assert first == again == 2 * 8 * 16 * 20
    assert measured == [(16, 20)]
    entries = list((tmp_path / "cache" / "activation_peaks").glob("*.json"))
    assert [json.loads(entry.read_text()) for entry in entries] == [{"values": first}]
    assert cached_peak_activation_values(_network(), 3, 32, 20) == 2 * 8 * 32 * 20
    assert cached_peak_activation_values(_network(16), 3, 16, 20) == 2 * 16 * 16 * 20
    assert measured == [(16, 20), (32, 20), (16, 20)]


def test_what_sets_the_layer_sizes_changes_the_fingerprint() -> None:
    base = network_fingerprint(_network())
    assert network_fingerprint(_network()) == base  # not the weights' values
    assert network_fingerprint(_network(16)) != base  # a weight's shape
    strided = _network()
    strided[2].stride = (2, 2)  # a setting that repr shows, weights unchanged
    assert network_fingerprint(strided) != base
    assert network_fingerprint(_network().half()) != base  # the weights' type


def test_a_damaged_entry_is_measured_again_and_replaced(
        measured: list[tuple[int, int]], tmp_path: Path) -> None:
    cached_peak_activation_values(_network(), 3, 16, 16)
    (entry,) = (tmp_path / "cache" / "activation_peaks").glob("*.json")
    for damage in ("{not json", '{"values": -5}', '{"values": "many"}', "[]"):
        entry.write_text(damage)
        assert cached_peak_activation_values(_network(), 3, 16, 16) == 2 * 8 * 16 * 16
        assert json.loads(entry.read_text()) == {"values": 2 * 8 * 16 * 16}
    assert len(measured) == 5


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_cache_that_cannot_be_written_only_costs_measuring_again(
        measured: list[tuple[int, int]], tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache").chmod(0o500)
    try:
        assert cached_peak_activation_values(_network(), 3, 16, 16) == 2 * 8 * 16 * 16
        assert cached_peak_activation_values(_network(), 3, 16, 16) == 2 * 8 * 16 * 16
    finally:
        (tmp_path / "cache").chmod(0o700)
    assert len(measured) == 2


def test_a_cache_path_that_is_a_file_only_costs_measuring_again(
        measured: list[tuple[int, int]], tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("not a folder")
    assert cached_peak_activation_values(_network(), 3, 16, 16) == 2 * 8 * 16 * 16
    assert len(measured) == 1


def test_the_budget_reads_the_cached_count(measured: list[tuple[int, int]]) -> None:
    first = ImageBudget.for_generator(_network(), 3, 3, 1, 64, 2**30)
    second = ImageBudget.for_generator(_network(), 3, 3, 1, 64, 2**30)
    assert first == second and first.activation_bytes == 4 * 2 * 8 * 64 * 64
    assert measured == [(64, 64)]


def test_a_network_without_meta_kernels_is_cached_as_no_estimate(
        measured: list[tuple[int, int]]) -> None:
    class HostOnly(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * x.mean().item()  # meta tensors have no values to read: refused

    assert cached_peak_activation_values(HostOnly(), 3, 8, 8) == 0
    assert cached_peak_activation_values(HostOnly(), 3, 8, 8) == 0
    assert measured == [(8, 8)]
