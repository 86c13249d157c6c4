"""Self-describing, pickle-free checkpoints: one safetensors file each, and their retention.

Tensors (weights, optimiser moments, RNG states, image pools) are safetensors entries; the rest
is a JSON manifest in the header metadata (``imtrans.manifest``, beside ``imtrans.format`` =
``"1"``). Loading parses JSON and raw tensor bytes only: a stranger's file cannot run code.
Writes go through :func:`imtrans.core.atomic.atomic_path`: a temporary name that never matches the
checkpoint pattern, fsynced, renamed over the final name and the directory fsynced, so a crash
leaves the old file or the new one whole. The file is streamed there one tensor at a time (the
header first, written here as safetensors writes it), so a save needs memory for one tensor's
CPU copy at most, not for the whole file.

Names carry what retention needs: ``step_00001000.safetensors`` mid-epoch,
``step_00001000_epoch_0005.safetensors`` when epoch 5 ended (5 epochs done). So retention never
opens a file, and works even beside a damaged one.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from imtrans.core.atomic import atomic_path
from imtrans.core.jsonfile import JsonTooDeepError, loads_bounded
from imtrans.core.open_flags import open_flags
from imtrans.core.regular_files import open_regular_file
from imtrans.errors import CheckpointError
from imtrans.runs.checkpoints.foreign import foreign_file_message

__all__ = [
    "FORMAT_VERSION",
    "LoadedCheckpoint",
    "checkpoint_name",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "parse_checkpoint_name",
    "prune_checkpoints",
    "save_checkpoint",
]

FORMAT_VERSION = "1"
MANIFEST_KEY = "imtrans.manifest"
FORMAT_KEY = "imtrans.format"
# A safetensors header lists names, dtypes and offsets; even huge models stay far below this.
MAX_HEADER_BYTES = 100 * 1024 * 1024
# The key of the header's metadata entry, which no tensor may take.
_METADATA_ENTRY = "__metadata__"

#: Every dtype safetensors stores, by its name there, in the order its writer lays tensors out
#: (widest first, so that each one stays aligned; ties by name). Writing in the same order
#: keeps a streamed file byte for byte what ``safetensors.torch.save`` would build.
_DTYPES: dict[torch.dtype, str] = {
    torch.uint64: "U64",
    torch.int64: "I64",
    torch.float64: "F64",
    torch.complex64: "C64",
    torch.float32: "F32",
    torch.uint32: "U32",
    torch.int32: "I32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.uint16: "U16",
    torch.int16: "I16",
    torch.float8_e5m2fnuz: "F8_E5M2FNUZ",
    torch.float8_e4m3fnuz: "F8_E4M3FNUZ",
    torch.float8_e8m0fnu: "F8_E8M0",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.float4_e2m1fn_x2: "F4",
    torch.bool: "BOOL",
}
_LAYOUT_RANK = {dtype: rank for rank, dtype in enumerate(_DTYPES)}
# Integers as wide as one byte-swapped unit (a complex64 is two float32 halves).
_SWAP_UNITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A loaded checkpoint.

    Attributes:
        path: The file it was read from.
        tensors: Every tensor by name, on the requested device.
        manifest: The JSON manifest (plain dicts, lists, strings, numbers, booleans, None).
    """

    path: Path
    tensors: dict[str, Tensor]
    manifest: dict[str, Any]


def _check_json(value: Any, where: str) -> None:
    """Refuse anything ``json`` would reject or silently change (int keys, NaN, sets)."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CheckpointError(f"{where} is {value}, but JSON has no NaN or infinity")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(
                    f"{where} has the key {key!r} ({type(key).__name__}); JSON keys are strings"
                )
            _check_json(item, f"{where}[{key!r}]")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
        return
    raise CheckpointError(
        f"{where} is a {type(value).__name__}, which JSON cannot store; expected None, bool, "
        "int, float, str, list or dict (tensors belong in the tensors mapping)"
    )


def _prepare_tensors(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Check every entry and detach it; the tensors stay where they are until written.

    Tied weights and views need no copy: each entry is written from its own bytes, so two
    names that share storage become two independent tensors in the file.
    """
    prepared: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"tensor names must be non-empty strings, got {name!r}")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: no JSON header can hold it
            raise CheckpointError(f"tensor name {name!r} is not valid Unicode: {exc}") from exc
        if name == _METADATA_ENTRY:
            raise CheckpointError(
                f"tensors[{name!r}]: that name is the safetensors header's metadata entry; "
                "choose another"
            )
        if not isinstance(tensor, Tensor):
            raise CheckpointError(
                f"tensors[{name!r}] is a {type(tensor).__name__}; expected a torch.Tensor "
                "(put other values in the manifest)"
            )
        if tensor.layout != torch.strided:
            raise CheckpointError(f"tensors[{name!r}] is {tensor.layout}; expected a dense tensor")
        if tensor.is_meta:
            raise CheckpointError(f"tensors[{name!r}] is on the meta device and has no data")
        if tensor.dtype not in _DTYPES:
            raise CheckpointError(
                f"tensors[{name!r}] is {tensor.dtype}, which safetensors cannot store; "
                f"expected one of {', '.join(str(dtype) for dtype in _DTYPES)}"
            )
        if tensor.dtype == torch.float4_e2m1fn_x2 and tensor.dim() == 0:
            raise CheckpointError(
                f"tensors[{name!r}] is a 0-dim {tensor.dtype}, which safetensors cannot store "
                "(it counts the two 4-bit values of each byte along the last dimension)"
            )
        prepared[name] = tensor.detach()
    return prepared


def _tensor_bytes(tensor: Tensor) -> memoryview:
    """One tensor's bytes as safetensors stores them (C order, little-endian).

    Only this tensor is copied to the CPU (and only if it is elsewhere or not contiguous); a
    contiguous CPU tensor is read in place. Viewing the data as bytes covers the dtypes numpy
    lacks (bfloat16, the float8 kinds) and bool alike.
    """
    if tensor.numel() == 0:
        return memoryview(b"")
    flat = tensor.to("cpu").contiguous().reshape(-1)
    if sys.byteorder == "big" and flat.element_size() > 1:
        unit = 4 if flat.dtype == torch.complex64 else flat.element_size()
        return flat.view(_SWAP_UNITS[unit]).numpy().byteswap().data.cast("B")
    return flat.view(torch.uint8).numpy().data


def _safetensors_header(tensors: dict[str, Tensor], metadata: Mapping[str, str] | None) -> bytes:
    """The 8-byte length and the JSON header of a safetensors file of ``tensors`` in order.

    The JSON is compact, with non-ASCII left as UTF-8 and the metadata keys sorted (safetensors
    writes them in hash order), padded with spaces to a multiple of 8 bytes as safetensors pads
    it, so that the tensor data that follows starts aligned.
    """
    header: dict[str, Any] = {}
    if metadata is not None:
        header[_METADATA_ENTRY] = dict(sorted(metadata.items()))
    offset = 0
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        shape = list(tensor.shape)
        if tensor.dtype == torch.float4_e2m1fn_x2:  # safetensors counts single 4-bit values
            shape[-1] *= 2
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": shape,
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


class _SafetensorsFile:
    """The bytes of a safetensors file, made one piece at a time as they are written.

    :meth:`pieces` yields the header, then each tensor's bytes (one tensor in memory at a
    time). ``len()`` and slicing also work, producing only the bytes asked for, so that code
    written for a ``bytes`` payload (a writer that writes in ranges) works unchanged.

    Args:
        tensors: Checked tensors (from :func:`_prepare_tensors`).
        metadata: The header's string metadata, or None for none.
    """

    def __init__(self, tensors: dict[str, Tensor], metadata: Mapping[str, str] | None) -> None:
        ordered = sorted(tensors.items(), key=lambda item: (_LAYOUT_RANK[item[1].dtype], item[0]))
        self.tensors = dict(ordered)
        self.header = _safetensors_header(self.tensors, metadata)
        self.sizes = [tensor.numel() * tensor.element_size() for tensor in self.tensors.values()]

    def __len__(self) -> int:
        return len(self.header) + sum(self.sizes)

    def pieces(self) -> Iterator[bytes | memoryview]:
        """The file's bytes in order: the header, then one piece per tensor."""
        yield self.header
        for tensor in self.tensors.values():
            yield _tensor_bytes(tensor)

    def __getitem__(self, part: slice) -> bytes:
        start, stop, step = part.indices(len(self))
        if step != 1:
            raise ValueError("a safetensors payload is sliced in ranges only (step 1)")
        chunks, begin = [self.header[start:stop]], len(self.header)
        for tensor, size in zip(self.tensors.values(), self.sizes, strict=True):
            if begin < stop and begin + size > start:
                chunks.append(bytes(_tensor_bytes(tensor)[max(start - begin, 0):stop - begin]))
            begin += size
        return b"".join(chunks)


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror[0].lower()}{error.strerror[1:]} (errno {error.errno})"
    return str(error) or type(error).__name__


def _write_bytes(path: Path, data: bytes | _SafetensorsFile) -> None:
    """Write ``data`` to the new temporary file of an atomic write (which makes it durable).

    A :class:`_SafetensorsFile` is streamed piece by piece, never joined in memory.
    """
    # O_BINARY (Windows): a text-mode descriptor would turn each 0x0A byte into 0D 0A.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | open_flags("O_BINARY"), 0o644)
    with os.fdopen(fd, "wb") as handle:
        if isinstance(data, _SafetensorsFile):
            for piece in data.pieces():
                handle.write(piece)
        else:
            handle.write(data)


def save_checkpoint(path: Path, tensors: Mapping[str, Tensor], manifest: Mapping[str, Any]) -> Path:
    """Atomically write a checkpoint, streaming it one tensor at a time.

    Each tensor is copied to the CPU only while it is written, so a save needs memory for its
    largest tensor, not for the file; the caller's tensors are not changed. Names that share
    storage (tied weights) are stored as independent tensors.

    Args:
        path: The final file name; its directory is created if missing.
        tensors: Every tensor to store, by name.
        manifest: JSON-serialisable data (string keys, finite floats).

    Returns:
        The path written.

    Raises:
        CheckpointError: The manifest or tensors cannot be stored, or writing failed (disk
            full...); the temporary file is removed and a previous ``path`` left untouched.

    Example:
        >>> save_checkpoint(Path("ck/step_00000010.safetensors"), {"w": torch.zeros(3)},
        ...                 {"step": 10})  # doctest: +SKIP
    """
    path = Path(path)
    if not isinstance(manifest, Mapping):
        raise CheckpointError(f"the manifest must be a mapping, got {type(manifest).__name__}")
    _check_json(manifest, "manifest")
    metadata = {
        FORMAT_KEY: FORMAT_VERSION,
        MANIFEST_KEY: json.dumps(manifest, allow_nan=False, separators=(",", ":")),
    }
    payload = _SafetensorsFile(_prepare_tensors(tensors), metadata)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:  # removed again if anything below fails
            _write_bytes(temporary, payload)
    except Exception as exc:
        raise CheckpointError(
            f"could not write checkpoint {path}: {_describe(exc)}; "
            "any previous checkpoint there is unchanged"
        ) from exc
    return path


def _check_header(path: Path) -> None:
    """Refuse files whose declared header cannot fit before safetensors allocates for it."""
    try:
        # Only a regular file: a FIFO would block here and a device act on its opening.
        with open_regular_file(path, what="checkpoint", error=CheckpointError) as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {_describe(exc)}") from exc
    if len(prefix) < 8:
        raise CheckpointError(
            f"{path} is {size} bytes; a safetensors file starts with an 8-byte header length"
        )
    (header_length,) = struct.unpack("<Q", prefix)
    if header_length > MAX_HEADER_BYTES or 8 + header_length > size:
        foreign = foreign_file_message(path)  # a .pth or .pt handed over by mistake
        if foreign is not None:
            raise CheckpointError(foreign)
        raise CheckpointError(
            f"{path} declares a {header_length}-byte header, but the file is {size} bytes "
            f"(and headers are at most {MAX_HEADER_BYTES} bytes): not a safetensors file, "
            "or truncated"
        )


#: Manifest entries that readers use as they are, and what each must be when present.
_COUNTS = ("step", "epoch")
_OBJECTS = ("recipe", "optimizers", "schedule", "environment")


def _check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Refuse a manifest whose well-known entries have the wrong JSON type, so that a hostile
    or damaged file fails here with its path rather than deep inside a resume."""
    def refuse(what: str, value: Any, expected: str) -> CheckpointError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else f"{shown[:57]}..."
        return CheckpointError(f"{path} has a malformed manifest: {what} is {shown}; "
                               f"expected {expected}")

    for key in _COUNTS:
        value = manifest.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise refuse(key, value, "an integer >= 0")
    for key in _OBJECTS:
        if not isinstance(manifest.get(key, {}), dict):
            raise refuse(key, manifest[key], "a JSON object")
    # Every section of a recipe is a table ([run], [data], [losses]...).
    for section, table in manifest.get("recipe", {}).items():
        if not isinstance(table, dict):
            raise refuse(f"recipe [{section}]", table, "a table")


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Read a checkpoint written by :func:`save_checkpoint`, executing nothing from it.

    Args:
        path: The checkpoint file.
        device: Where to put the tensors.

    Returns:
        The checkpoint's path, tensors and manifest.

    Raises:
        CheckpointError: The file is missing, not a safetensors file, truncated, has no or a
            malformed imtrans manifest (not JSON; a step or epoch that is not a count; a
            recipe, optimizers, schedule or environment that is not an object), or an unknown
            format version.

    Example:
        >>> load_checkpoint(Path("ck/step_00000010.safetensors")).manifest  # doctest: +SKIP
        {'step': 10}
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; expected a .safetensors file")
    _check_header(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    version = metadata.get(FORMAT_KEY)
    if version is None or MANIFEST_KEY not in metadata:
        raise CheckpointError(
            f"{path} is a safetensors file but not an imtrans checkpoint: its metadata has "
            f"{sorted(metadata)}; expected {FORMAT_KEY!r} and {MANIFEST_KEY!r}"
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}; this imtrans reads format "
            f"{FORMAT_VERSION!r}"
        )
    try:
        manifest = loads_bounded(metadata[MANIFEST_KEY])
    except JsonTooDeepError as exc:  # a RecursionError deep inside json, or later code
        raise CheckpointError(f"{path} has a manifest that is {exc}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} has a manifest that is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(
            f"{path} has a manifest that is a JSON {type(manifest).__name__}; expected an object"
        )
    _check_manifest(manifest, path)
    if torch.device(device).type != "cpu":
        tensors = {name: tensor.to(device) for name, tensor in tensors.items()}
    return LoadedCheckpoint(path=path, tensors=tensors, manifest=manifest)


_NAME = re.compile(r"step_(\d{8,})(?:_epoch_(\d{4,}))?\.safetensors")


def checkpoint_name(step: int, *, epoch_end: int | None = None) -> str:
    """The file name of the checkpoint saved after ``step`` optimiser steps.

    Args:
        step: Optimiser steps done so far (>= 0).
        epoch_end: Epochs completed, for a checkpoint saved as an epoch ends; None mid-epoch.

    Returns:
        ``step_<8 digits>.safetensors`` or ``step_<8 digits>_epoch_<4 digits>.safetensors``.

    Raises:
        CheckpointError: ``step`` or ``epoch_end`` is negative.

    Example:
        >>> checkpoint_name(1000), checkpoint_name(1000, epoch_end=5)
        ('step_00001000.safetensors', 'step_00001000_epoch_0005.safetensors')
    """
    if step < 0 or (epoch_end is not None and epoch_end < 0):
        raise CheckpointError(f"step {step} and epoch {epoch_end} must not be negative")
    epoch = "" if epoch_end is None else f"_epoch_{epoch_end:04d}"
    return f"step_{step:08d}{epoch}.safetensors"


def parse_checkpoint_name(name: str) -> tuple[int, int | None] | None:
    """``(step, epoch_end)`` of a checkpoint file name, or None for any other name.

    Example:
        >>> parse_checkpoint_name("step_00001000_epoch_0005.safetensors")
        (1000, 5)
    """
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    return int(match[1]), None if match[2] is None else int(match[2])


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``directory`` (missing: none) as ``(step, path)``, oldest first.

    Temporary files of unfinished writes never match the checkpoint name pattern.

    Example:
        >>> list_checkpoints(Path("runs/x/checkpoints"))  # doctest: +SKIP
        [(500, PosixPath('runs/x/checkpoints/step_00000500_epoch_0001.safetensors'))]
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        parsed = parse_checkpoint_name(entry.name)
        if parsed is not None and entry.is_file():
            found.append((parsed[0], entry))
    return sorted(found, key=lambda item: (item[0], item[1].name))


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint with the highest step in ``directory``, or None if there is none.

    Example:
        >>> latest_checkpoint(Path("runs/x/checkpoints"))  # doctest: +SKIP
        PosixPath('runs/x/checkpoints/step_00001000.safetensors')
    """
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1][1] if checkpoints else None


def prune_checkpoints(
    directory: Path, *, keep_last: int, keep_every_epochs: int | None = None
) -> list[Path]:
    """Delete old checkpoints, keeping the newest ``keep_last`` and the epoch milestones.

    A milestone's name says it was saved as an epoch ended whose number is a multiple of
    ``keep_every_epochs``. Temporary files are neither counted nor deleted (another process may
    be writing one).

    Args:
        directory: The checkpoint directory.
        keep_last: How many of the newest to keep (>= 1: the newest is never deleted).
        keep_every_epochs: Keep epoch-end checkpoints of every this many epochs; None: none.

    Returns:
        The deleted paths.

    Raises:
        CheckpointError: A count is below 1, or a file could not be deleted.

    Example:
        >>> prune_checkpoints(Path("ckpt"), keep_last=3, keep_every_epochs=10)  # doctest: +SKIP
        [PosixPath('ckpt/step_00000100.safetensors')]
    """
    if keep_last < 1 or (keep_every_epochs is not None and keep_every_epochs < 1):
        raise CheckpointError(
            f"keep_last={keep_last} and keep_every_epochs={keep_every_epochs} must be >= 1"
        )
    checkpoints = list_checkpoints(directory)
    deleted = []
    for _, path in checkpoints[:-keep_last]:
        epoch = parse_checkpoint_name(path.name)[1]  # type: ignore[index]
        if keep_every_epochs is not None and epoch is not None and epoch % keep_every_epochs == 0:
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise CheckpointError(
                f"could not delete old checkpoint {path}: {_describe(exc)}"
            ) from exc
        deleted.append(path)
    return deleted
