"""Streamed checkpoint writes: safetensors' own bytes, every dtype, bounded memory, atomicity."""

from __future__ import annotations

import errno
import io
import json
import os
import struct
import tracemalloc
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save as st_save
from torch import Tensor

from imtrans.errors import CheckpointError
from imtrans.runs.checkpoints import files as ckpt_module
from imtrans.runs.checkpoints.files import (
    FORMAT_KEY,
    FORMAT_VERSION,
    MANIFEST_KEY,
    checkpoint_name,
    load_checkpoint,
    save_checkpoint,
)


def mixed_tensors() -> dict[str, Tensor]:
    """Every layout case at once: widths 1 to 8, numpy-less dtypes, 0-dim, empty, views."""
    generator = torch.Generator().manual_seed(0)
    wide = torch.randn(6, 5, generator=generator)
    return {
        "float32": torch.randn(3, 4, generator=generator),
        "bfloat16": torch.randn(7, generator=generator).bfloat16(),
        "bool": torch.rand(5, generator=generator) > 0.5,
        "int64": torch.arange(-4, 5),
        "scalar": torch.tensor(2.5),
        "scalar_bool": torch.tensor(True),
        "empty": torch.zeros(0, 3),
        "empty_int64": torch.zeros(2, 0, dtype=torch.int64),
        "float16": torch.randn(3, generator=generator).half(),
        "float64": torch.randn(2, generator=generator).double(),
        "uint8": torch.arange(11, dtype=torch.uint8),
        "int8": torch.arange(-3, 3, dtype=torch.int8),
        "int16": torch.arange(5, dtype=torch.int16),
        "int32": torch.arange(5, dtype=torch.int32),
        "complex64": torch.randn(3, dtype=torch.complex64, generator=generator),
        "float8": torch.randn(4, generator=generator).to(torch.float8_e4m3fn),
        "float4": torch.arange(6, dtype=torch.uint8).view(torch.float4_e2m1fn_x2).reshape(2, 3),
        "transposed": wide.t(),  # not contiguous: written from a packed copy
        "zz.last": torch.ones(1),
        "a.first": torch.ones(1, dtype=torch.bfloat16),
        "naïve ü": torch.ones(2),
    }


def streamed(tensors: dict[str, Tensor], metadata: dict[str, str] | None) -> bytes:
    """What the streaming writer puts in a file, through its real write path."""
    payload = ckpt_module._SafetensorsFile(ckpt_module._prepare_tensors(tensors), metadata)
    buffer = io.BytesIO()
    for piece in payload.pieces():
        buffer.write(piece)
    return buffer.getvalue()


def reference(tensors: dict[str, Tensor], metadata: dict[str, str] | None) -> bytes:
    # Clones: safetensors refuses tensors that share storage, which the checkpoint writer takes.
    packed = {name: t.clone(memory_format=torch.contiguous_format) for name, t in tensors.items()}
    return st_save(packed, metadata=metadata)


def split(data: bytes) -> tuple[list[tuple[str, object]], bytes]:
    """A safetensors file's header entries in file order, and its data section."""
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length], object_pairs_hook=list), data[8 + length:]


@pytest.mark.parametrize("metadata", [None, {}, {"only": "one key"}])
def test_streamed_bytes_equal_safetensors_own_writer(metadata: dict[str, str] | None) -> None:
    tensors = mixed_tensors()
    assert streamed(tensors, metadata) == reference(tensors, metadata)


@pytest.mark.parametrize("count", range(0, 9))
def test_header_padding_matches_for_every_length(count: int) -> None:
    # Names of growing length move the header through every remainder modulo 8.
    tensors = {"x" * (index + 1): torch.ones(index) for index in range(count)}
    assert streamed(tensors, {"k": "v" * count}) == reference(tensors, {"k": "v" * count})


def test_saved_checkpoint_matches_safetensors_but_for_metadata_order(tmp_path: Path) -> None:
    # safetensors writes metadata keys in hash order (which varies between runs); the
    # streamed header sorts them. All else, the tensor entries and data above all, is equal.
    tensors = mixed_tensors()
    manifest = {"step": 3, "recipe": {"run": {"name": "x"}}}
    path = save_checkpoint(tmp_path / checkpoint_name(3), tensors, manifest)
    metadata = {FORMAT_KEY: FORMAT_VERSION,
                MANIFEST_KEY: json.dumps(manifest, allow_nan=False, separators=(",", ":"))}
    ours, theirs = path.read_bytes(), reference(tensors, metadata)
    assert len(ours) == len(theirs) and ours[:8] == theirs[:8]
    (our_meta, *our_entries), our_data = split(ours)
    (their_meta, *their_entries), their_data = split(theirs)
    assert our_entries == their_entries and our_data == their_data
    assert our_meta[0] == their_meta[0] == "__metadata__"
    assert our_meta[1] == sorted(our_meta[1]) and sorted(their_meta[1]) == our_meta[1]


def test_every_dtype_round_trips_bit_for_bit(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    tensors = {}
    for dtype in ckpt_module._DTYPES:
        # Random bytes reinterpreted: every bit pattern of every width, NaNs included.
        width = torch.empty(0, dtype=dtype).element_size()
        raw = torch.randint(0, 256, (6 * width,), dtype=torch.uint8, generator=generator)
        if dtype == torch.bool:
            raw = raw % 2  # a bool byte other than 0 or 1 is undefined
        tensors[str(dtype)] = raw.view(dtype).reshape(2, 3)
        if dtype != torch.float4_e2m1fn_x2:  # refused 0-dim, see below
            tensors[f"{dtype} scalar"] = raw[:width].view(dtype).reshape(())
        tensors[f"{dtype} empty"] = torch.empty(0, 4, dtype=dtype)
    path = save_checkpoint(tmp_path / checkpoint_name(1), tensors, {"step": 1})
    loaded = load_checkpoint(path).tensors
    with safe_open(str(path), framework="pt") as handle:
        opened = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    assert set(loaded) == set(opened) == set(tensors)
    for name, tensor in tensors.items():
        for got in (loaded[name], opened[name]):
            assert got.dtype == tensor.dtype and got.shape == tensor.shape, name
            assert torch.equal(got.reshape(-1).view(torch.uint8),
                               tensor.reshape(-1).view(torch.uint8)), name


def test_tied_and_viewed_storage_is_stored_per_name(tmp_path: Path) -> None:
    weight = torch.arange(12.0).reshape(3, 4)
    tensors = {"encoder.weight": weight, "decoder.weight": weight, "row": weight[1],
               "column": weight[:, 2], "expanded": torch.ones(1).expand(5)}
    path = save_checkpoint(tmp_path / checkpoint_name(1), tensors, {})
    loaded = load_checkpoint(path).tensors
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor), name
    loaded["encoder.weight"].zero_()  # independent tensors after loading
    assert loaded["decoder.weight"].sum() == weight.sum()
    assert split(path.read_bytes())[1] == split(reference(tensors, {"a": "b"}))[1]


def test_callers_tensors_are_left_alone(tmp_path: Path) -> None:
    weight = torch.randn(4, 4, requires_grad=True)
    before = weight.detach().clone()
    save_checkpoint(tmp_path / checkpoint_name(1), {"w": weight}, {})
    assert weight.requires_grad and weight.grad is None and torch.equal(weight.detach(), before)


def test_ranges_of_the_payload_equal_the_file(tmp_path: Path) -> None:
    # Writers that take the payload in ranges (a slowed writer in the crash tests does) get
    # the same bytes as a whole-file write.
    tensors = mixed_tensors()
    payload = ckpt_module._SafetensorsFile(ckpt_module._prepare_tensors(tensors), {"k": "v"})
    whole = streamed(tensors, {"k": "v"})
    assert len(payload) == len(whole)
    for piece in (1, 7, 64, len(whole) // 3, len(whole)):
        joined = b"".join(payload[start:start + piece] for start in range(0, len(whole), piece))
        assert joined == whole, piece
    assert payload[len(whole) - 5:] == whole[-5:] and payload[:0] == b""


def test_a_save_holds_no_copy_of_the_file_in_memory(tmp_path: Path) -> None:
    # safetensors' own writer returns the file as one bytes object, which tracemalloc sees;
    # the streamed write allocates no such buffer (tensor storage is not traced either way).
    tensors = {f"w{index}": torch.full((1_000_000,), float(index)) for index in range(8)}
    tracemalloc.start()
    try:
        save_checkpoint(tmp_path / checkpoint_name(1), tensors, {"step": 1})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / checkpoint_name(1)).stat().st_size > 32_000_000
    assert peak < 2_000_000, f"a 32 MB save allocated {peak} bytes of Python objects"


def failing_after(count: int, error: BaseException):
    """A stand-in for ``_tensor_bytes`` that fails on the tensor after ``count`` good ones."""
    real = ckpt_module._tensor_bytes
    calls = []

    def tensor_bytes(tensor: Tensor) -> memoryview:
        calls.append(tensor)
        if len(calls) > count:
            raise error
        return real(tensor)

    return tensor_bytes, calls


@pytest.mark.parametrize(
    ("error", "message"),
    [(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "no space left on device"),
     (RuntimeError("numpy() failed"), "numpy\\(\\) failed")],
)
def test_a_failure_mid_write_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException, message: str
) -> None:
    path = save_checkpoint(tmp_path / checkpoint_name(1), {"w": torch.ones(3)}, {"v": 1})
    old = path.read_bytes()
    tensors = {f"w{index}": torch.full((100_000,), float(index)) for index in range(5)}
    failing, calls = failing_after(2, error)
    monkeypatch.setattr(ckpt_module, "_tensor_bytes", failing)
    with pytest.raises(CheckpointError, match=message) as info:
        save_checkpoint(path, tensors, {"v": 2})
    assert len(calls) == 3  # two tensors were on disk when the third failed
    assert str(path) in str(info.value) and "unchanged" in str(info.value)
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == old
    assert load_checkpoint(path).manifest == {"v": 1}


def test_a_failed_first_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing, _ = failing_after(1, RuntimeError("boom"))
    monkeypatch.setattr(ckpt_module, "_tensor_bytes", failing)
    with pytest.raises(CheckpointError, match="boom"):
        save_checkpoint(tmp_path / "ck" / checkpoint_name(1),
                        {"a": torch.ones(2), "b": torch.ones(2)}, {})
    assert list((tmp_path / "ck").iterdir()) == []


def test_an_interrupt_mid_write_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not an Exception, so not a CheckpointError either: it propagates, and cleans up.
    path = save_checkpoint(tmp_path / checkpoint_name(1), {"w": torch.ones(3)}, {"v": 1})
    failing, _ = failing_after(1, KeyboardInterrupt())
    monkeypatch.setattr(ckpt_module, "_tensor_bytes", failing)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"a": torch.ones(2), "b": torch.ones(2)}, {"v": 2})
    assert list(tmp_path.iterdir()) == [path]
    assert load_checkpoint(path).manifest == {"v": 1}


@pytest.mark.parametrize(
    ("tensors", "message"),
    [({"__metadata__": torch.ones(1)}, "metadata entry"),
     ({"w": torch.ones(2, dtype=torch.complex128)}, "cannot store"),
     ({"w": torch.empty(3, device="meta")}, "meta device"),
     ({"w": torch.tensor(7, dtype=torch.uint8).view(torch.float4_e2m1fn_x2)}, "0-dim"),
     ({"\ud800": torch.ones(1)}, "not valid Unicode"),
     ({"w": torch.ones(2).to_sparse()}, "dense")],
)
def test_unstorable_tensors_are_refused_before_writing(
    tmp_path: Path, tensors: dict[str, Tensor], message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(tmp_path / checkpoint_name(1), tensors, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_stream_through_the_cpu(tmp_path: Path) -> None:
    tensors = {name: t.cuda() for name, t in mixed_tensors().items()}
    path = save_checkpoint(tmp_path / checkpoint_name(1), tensors, {})
    cpu = {name: t.cpu() for name, t in tensors.items()}
    assert split(path.read_bytes())[1] == split(reference(cpu, None))[1]
    loaded = load_checkpoint(path, device="cuda").tensors
    for name, tensor in cpu.items():
        assert loaded[name].is_cuda, name
        assert torch.equal(loaded[name].cpu().reshape(-1).view(torch.uint8),
                           tensor.contiguous().reshape(-1).view(torch.uint8)), name
