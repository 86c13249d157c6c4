"""Checkpoints: pickle-free round trips, exact resumption, atomic writes, hostile files."""

from __future__ import annotations

import errno
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save
from torch import nn

from imtrans.core.state_tensors import (
    load_module_tensors,
    load_optimizer_tensors,
    module_tensors,
    optimizer_tensors,
    restore_rng,
    rng_tensors,
)
from imtrans.errors import CheckpointError
from imtrans.runs.checkpoints import files as ckpt_module
from imtrans.runs.checkpoints.files import (
    checkpoint_name,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    parse_checkpoint_name,
    prune_checkpoints,
    save_checkpoint,
)


def small_net(channels: int = 4) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, 3, 1),
    )


def train(net: nn.Module, opt: torch.optim.Optimizer, batches: list[torch.Tensor]) -> None:
    for batch in batches:
        opt.zero_grad()
        loss = (net(batch) - batch).pow(2).mean()
        loss.backward()
        opt.step()


def full_state(net: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    tensors = module_tensors("gen", net)
    opt_tensors, opt_meta = optimizer_tensors("opt_g", opt)
    tensors |= opt_tensors | rng_tensors()
    return tensors, {"step": 3, "optimizers": {"opt_g": opt_meta}}


@pytest.fixture
def batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(2, 3, 8, 8, generator=gen) for _ in range(6)]


def test_round_trip_model_optimizer_rng_pool_and_nested_manifest(tmp_path, batches) -> None:
    torch.manual_seed(1)
    net = small_net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
    train(net, opt, batches[:2])
    tensors, manifest = full_state(net, opt)
    tensors["pool.fake_b"] = torch.randn(5, 3, 8, 8).transpose(2, 3)  # not contiguous
    manifest["notes"] = {"name": "demo", "lists": [1, 2.5, None, True, ["x", {"y": "z"}]]}
    path = save_checkpoint(tmp_path / checkpoint_name(3), tensors, manifest)

    loaded = load_checkpoint(path)
    assert loaded.path == path
    assert loaded.manifest == json.loads(json.dumps(manifest))
    assert set(loaded.tensors) == set(tensors)
    for name, tensor in tensors.items():
        assert loaded.tensors[name].dtype == tensor.dtype, name
        assert torch.equal(loaded.tensors[name], tensor), name
    assert loaded.tensors["opt_g.state.0.step"].shape == ()  # Adam's step keeps its shape
    assert not tensors["pool.fake_b"].is_contiguous()  # the caller's tensor is unchanged


def test_adam_continues_bit_exactly_after_save_and_load(tmp_path, batches) -> None:
    torch.manual_seed(2)
    net = small_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.5, 0.999), weight_decay=1e-4)
    train(net, opt, batches[:3])
    path = save_checkpoint(tmp_path / "step_00000003.safetensors", *full_state(net, opt))
    train(net, opt, batches[3:])

    torch.manual_seed(99)  # a fresh run with different initial weights
    fresh = small_net()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1.0)
    loaded = load_checkpoint(path)
    load_module_tensors("gen", fresh, loaded.tensors)
    load_optimizer_tensors(
        "opt_g", fresh_opt, loaded.tensors, loaded.manifest["optimizers"]["opt_g"]
    )
    assert fresh_opt.param_groups[0]["betas"] == (0.5, 0.999)
    train(fresh, fresh_opt, batches[3:])
    for (name, a), b in zip(net.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_rng_restore_repeats_the_same_draws() -> None:
    np = pytest.importorskip("numpy")
    random.gauss(0, 1)  # leaves a cached gaussian in both generators' state
    np.random.standard_normal()
    state = rng_tensors()
    first = (torch.rand(4), random.random(), random.gauss(0, 1), np.random.standard_normal(3))
    torch.rand(7), random.random(), np.random.rand(5)
    restore_rng(state)
    second = (torch.rand(4), random.random(), random.gauss(0, 1), np.random.standard_normal(3))
    assert torch.equal(first[0], second[0])
    assert first[1:3] == second[1:3]
    assert np.array_equal(first[3], second[3])


def test_shared_and_aliased_tensors_are_saved(tmp_path) -> None:
    base = torch.arange(12.0)
    tensors = {"a": base, "b": base, "view": base[2:6], "t": base.view(3, 4).t()}
    save_checkpoint(tmp_path / "x.safetensors", tensors, {})
    loaded = load_checkpoint(tmp_path / "x.safetensors").tensors
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor)


@pytest.mark.parametrize(
    "manifest", [{"s": {1, 2}}, {"nan": float("nan")}, {1: "int key"}, {"t": torch.zeros(1)}]
)
def test_manifest_that_is_not_json_is_refused_before_writing(tmp_path, manifest) -> None:
    with pytest.raises(CheckpointError, match="manifest"):
        save_checkpoint(tmp_path / "x.safetensors", {}, manifest)
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_leaves_previous_checkpoint_and_no_temp(tmp_path, monkeypatch) -> None:
    path = save_checkpoint(tmp_path / checkpoint_name(1), {"w": torch.ones(3)}, {"v": 1})

    def crash(*args: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(ckpt_module.os, "replace", crash)
    with pytest.raises(CheckpointError, match="input/output error"):
        save_checkpoint(path, {"w": torch.zeros(3)}, {"v": 2})
    assert list(tmp_path.iterdir()) == [path]
    assert load_checkpoint(path).manifest == {"v": 1}


def test_disk_full_is_reported_and_cleaned_up(tmp_path, monkeypatch) -> None:
    path = save_checkpoint(tmp_path / checkpoint_name(1), {"w": torch.ones(3)}, {"v": 1})

    def half_write(temp: Path, data: bytes) -> None:
        temp.write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt_module, "_write_bytes", half_write)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, {"w": torch.zeros(1000)}, {"v": 2})
    assert "no space left on device" in str(info.value) and str(path) in str(info.value)
    assert list(tmp_path.iterdir()) == [path]
    assert load_checkpoint(path).manifest == {"v": 1}


# Imports torch once, then forks writers and SIGKILLs each at a random moment: a genuine kill
# mid-write, without paying torch's import time per kill. Every writer also overwrites one
# shared name, so a kill can land while a previous complete file is being replaced.
KILLER = """
import os, random, signal, sys, time, torch
from pathlib import Path
from imtrans.runs.checkpoints.files import checkpoint_name, save_checkpoint
folder, delays = Path(sys.argv[1]), random.Random(0)
for round_ in range(6):
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        for i in range(round_ * 1000, round_ * 1000 + 10_000):
            value = torch.full((1_000_000,), float(i))
            save_checkpoint(folder / checkpoint_name(i), {"v": value}, {"i": i})
            save_checkpoint(folder / "step_99999999.safetensors", {"v": value}, {"i": i})
            if ready_w is not None:
                os.write(ready_w, b"x"); os.close(ready_w); ready_w = None
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    os.close(ready_r)
    time.sleep(delays.uniform(0.0, 0.15))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_mid_write_leaves_only_complete_checkpoints(tmp_path) -> None:
    subprocess.run([sys.executable, "-c", KILLER, str(tmp_path)], check=True, timeout=60)
    found = list_checkpoints(tmp_path)
    assert len(found) >= 7  # at least one numbered checkpoint per writer, plus the shared name
    for _, path in found:
        loaded = load_checkpoint(path)
        assert torch.all(loaded.tensors["v"] == loaded.manifest["i"])
    assert latest_checkpoint(tmp_path) == tmp_path / "step_99999999.safetensors"
    complete = {path for _, path in found}
    assert all(p.name.startswith(".tmp-") for p in tmp_path.iterdir() if p not in complete)


def real_checkpoint_bytes(tmp_path: Path) -> bytes:
    path = save_checkpoint(tmp_path / "real.safetensors", {"w": torch.ones(64)}, {"a": 1})
    return path.read_bytes()


def safetensors_with(metadata: dict[str, str] | None) -> bytes:
    return st_save({"w": torch.ones(4)}, metadata=metadata)


HOSTILE = {
    "empty": lambda real: b"",
    "random bytes": lambda real: random.Random(5).randbytes(4096),
    "small header length then garbage": lambda real: struct.pack("<Q", 100) + b"\xff" * 200,
    "header json malformed": lambda real: struct.pack("<Q", 5) + b"{abc}",
    "truncated to half": lambda real: real[: len(real) // 2],
    "truncated by one byte": lambda real: real[:-1],
    "truncated inside the header": lambda real: real[:20],
    "10 TB header": lambda real: struct.pack("<Q", 10 * 2**40) + b"{}",
    "offsets beyond the data": lambda real: (
        _header({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}) + b"\0" * 16
    ),
    "no manifest": lambda real: safetensors_with(None),
    "manifest not json": lambda real: safetensors_with(
        {"imtrans.format": "1", "imtrans.manifest": "{not json"}
    ),
    "manifest a list": lambda real: safetensors_with(
        {"imtrans.format": "1", "imtrans.manifest": "[1, 2]"}
    ),
    "unknown format": lambda real: safetensors_with(
        {"imtrans.format": "2", "imtrans.manifest": "{}"}
    ),
}


def _header(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_files_are_refused_with_checkpoint_error(tmp_path, kind) -> None:
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(HOSTILE[kind](real_checkpoint_bytes(tmp_path)))
    with pytest.raises(CheckpointError, match=r"hostile\.safetensors"):
        load_checkpoint(path)


def test_missing_file_and_directory_are_refused(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint(tmp_path)


def test_strict_module_load_names_missing_unexpected_and_shapes() -> None:
    saved = module_tensors("gen_ab", small_net(32))
    with pytest.raises(CheckpointError) as info:
        load_module_tensors("gen_ab", small_net(64), saved)
    message = str(info.value)
    assert message.startswith("gen_ab: ")
    assert "shape of 0.weight is (32, 3, 3, 3) in the checkpoint but (64, 3, 3, 3)" in message

    missing = dict(saved)
    del missing["gen_ab.1.running_mean"]
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: 1\.running_mean"):
        load_module_tensors("gen_ab", small_net(32), missing)
    extra = saved | {"gen_ab.9.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"not in the recipe's network: 9\.weight"):
        load_module_tensors("gen_ab", small_net(32), extra)


def test_optimizer_with_other_groups_is_refused() -> None:
    net = small_net()
    tensors, meta = optimizer_tensors("opt_d", torch.optim.Adam(net.parameters()))
    other = torch.optim.Adam(nn.Linear(2, 2).parameters())
    with pytest.raises(CheckpointError, match=r"opt_d: .*sizes"):
        load_optimizer_tensors("opt_d", other, tensors, meta)


def test_optimizer_moments_of_the_wrong_shape_are_refused(batches) -> None:
    net = small_net()
    opt = torch.optim.Adam(net.parameters())
    train(net, opt, batches[:1])
    tensors, meta = optimizer_tensors("opt_g", opt)
    tensors["opt_g.state.2.exp_avg_sq"] = torch.zeros(7)  # parameter 2 is the norm's weight
    fresh = torch.optim.Adam(net.parameters())
    with pytest.raises(CheckpointError, match=r"opt_g: the checkpoint's exp_avg_sq of "
                                              r"parameter 2 has shape \(7,\), the parameter "
                                              r"has \(4,\)"):
        load_optimizer_tensors("opt_g", fresh, tensors, meta)
    assert fresh.state_dict()["state"] == {}  # nothing was loaded


def test_names_listing_and_latest_ignore_temp_files(tmp_path) -> None:
    assert checkpoint_name(1000) == "step_00001000.safetensors"
    assert parse_checkpoint_name(checkpoint_name(1000, epoch_end=5)) == (1000, 5)
    assert latest_checkpoint(tmp_path / "missing") is None
    for step in (30, 10, 20):
        save_checkpoint(tmp_path / checkpoint_name(step), {}, {})
    (tmp_path / f".tmp-{checkpoint_name(40)}-123-abcd").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("x")
    assert [step for step, _ in list_checkpoints(tmp_path)] == [10, 20, 30]
    assert latest_checkpoint(tmp_path) == tmp_path / checkpoint_name(30)


def test_retention_keeps_last_k_and_epoch_milestones(tmp_path) -> None:
    names = [checkpoint_name(step * 100, epoch_end=step) for step in range(1, 11)]
    names += [checkpoint_name(1050), checkpoint_name(1070)]  # mid-epoch, newest
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    temp = tmp_path / f".tmp-{checkpoint_name(1100)}-1-ff"
    temp.write_bytes(b"partial")

    deleted = prune_checkpoints(tmp_path, keep_last=2, keep_every_epochs=4)
    kept = [parse_checkpoint_name(p.name) for _, p in list_checkpoints(tmp_path)]
    assert kept == [(400, 4), (800, 8), (1050, None), (1070, None)]
    assert len(deleted) == 8 and temp.exists()

    assert prune_checkpoints(tmp_path, keep_last=1) != []
    assert latest_checkpoint(tmp_path) == tmp_path / checkpoint_name(1070)
    with pytest.raises(CheckpointError, match="keep_last=0"):
        prune_checkpoints(tmp_path, keep_last=0)
