"""What a ``.pth`` that is not a plain state dict really is, told without unpickling it.

:func:`imtrans.zoo.state_dicts.read_official_state_dict` reads official files with
``torch.load(weights_only=True)``. Before and after that load, this module answers the
questions torch's own messages leave open, in one plain line each (no ANSI codes, no advice
to load with ``weights_only=False``):

- an empty file, or a Git LFS pointer (the 134-byte text a clone without ``git lfs`` holds in
  place of the weights), is named for what it is, with how to get the real file;
- a pickle ``weights_only`` refuses is read opcode by opcode (:mod:`pickletools`, which builds
  nothing) for the globals it names: a whole pickled model (``torch.save(model)``) is named by
  its class, with how to save its weights instead; anything else by the calls it asks for;
- a file whose tensors cannot fit in memory (a deflated zip member inflates whole) is refused
  before ``torch.load`` reads it;
- a tensor whose storage cannot hold its shape (a stride-0 view that ``torch.save`` stores as
  its small storage and a huge shape) is refused by key: it is not weights, and using it would
  make the import build a network as large as the shape claims.

Example:
    >>> check_real_storage(Path("g.pth"), "w", torch.zeros(1).expand(1000, 3))
    Traceback (most recent call last):
    imtrans.errors.CheckpointError: g.pth: w is not real weights: ...
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import torch
from torch import Tensor

from imtrans.core.device import device_memory
from imtrans.core.regular_files import size_text
from imtrans.errors import CheckpointError

__all__ = ["check_load_size", "check_real_storage", "refused_pickle_message",
           "unreadable_file_message"]

_LFS_START = b"version https://git-lfs.github.com/spec/"
#: A Git LFS pointer is a few lines of text; anything longer is not one.
_LFS_MAX_BYTES = 1024
#: Opcodes read at most when looking for a pickle's globals: enough for any model's header.
_MAX_OPCODES = 200_000
#: Modules whose globals a weights_only-refused pickle of a model also names; the model's own
#: class is the first global outside them.
_PLUMBING = ("torch", "collections", "__builtin__", "builtins", "copyreg", "_codecs", "numpy")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def unreadable_file_message(path: Path) -> str | None:
    """One line for a file that cannot be a ``torch.save`` file at all (empty, or a Git LFS
    pointer), or None."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            start = handle.read(_LFS_MAX_BYTES + 1)
    except OSError:
        return None  # torch.load reports it
    if size == 0:
        return f"{path} is empty (0 bytes), not a PyTorch file"
    if start.startswith(_LFS_START) and len(start) <= _LFS_MAX_BYTES:
        text = start.decode("utf-8", errors="replace")
        real = re.search(r"^size (\d+)$", text, re.MULTILINE)
        of = f" of a {int(real[1]):,}-byte file" if real else ""
        return (f"{path} is a Git LFS pointer{of} ({size} bytes of text), not the checkpoint: "
                "the repository was cloned without Git LFS; run `git lfs install` and `git lfs "
                "pull` in that repository, or download the real file")
    return None


def check_load_size(path: Path) -> None:
    """Refuse a file whose tensors cannot fit in the RAM, before ``torch.load`` reads it.

    ``torch.load`` holds every tensor of the file at once, and inflates a compressed zip
    member whole (``torch.save`` never compresses, but a file of a few kilobytes can declare
    gigabytes that way). The sizes a zip's directory declares for its tensor records, else
    the file's own size, are compared with the memory: a lower bound of what the load takes.

    Raises:
        CheckpointError: the tensors take more than the machine's memory.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                needed = sum(info.file_size for info in archive.infolist()
                             if "/data/" in info.filename or info.filename.startswith("data/"))
            what = f"unpacks to {needed:,} bytes of tensors"
        else:
            needed = path.stat().st_size
            what = f"is {needed:,} bytes"
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # torch.load reports it
    total = device_memory(torch.device("cpu"))
    if total is not None and needed > total:
        raise CheckpointError(f"{path} {what}, more than the memory of the CPU "
                              f"({size_text(total)}): it cannot be loaded here (refused before "
                              "reading it)")


def refused_pickle_message(path: Path, error: BaseException) -> str:
    """The line for a pickle ``torch.load(weights_only=True)`` refused: a whole model named by
    its class, else the globals the pickle asks for (torch's own text as a last resort)."""
    names = _globals(path)
    if any(name.startswith("torch.nn.modules.") for name in names):
        model = next((name for name in names if not name.startswith(_PLUMBING)), names[0])
        return (f"{path} holds a whole pickled model ({model}), not a state dict; loading it "
                "would run code from the file, so imtrans never does: where the model is "
                "loaded, save its weights with torch.save(model.state_dict(), path) and "
                "import that file")
    foreign = [name for name in names if not name.startswith(_PLUMBING)] or names
    if foreign:
        asks = ", ".join(dict.fromkeys(foreign[:5]))
    else:
        text = _ANSI.sub("", str(error)).strip()
        asks = text.splitlines()[0].split(". ")[0] if text else type(error).__name__
    return (f"{path} was refused: its pickle asks for more than tensors and plain containers "
            f"({asks}); imtrans reads .pth files with torch.load(weights_only=True) only, so "
            "nothing in it ran")


def check_real_storage(path: Path, key: str, tensor: Tensor) -> None:
    """Refuse ``tensor`` when its storage cannot hold its shape's values one by one.

    Raises:
        CheckpointError: the storage is smaller than the shape needs, or a dimension of more
            than one value has stride 0 (every value of it is the same stored one).
    """
    if tensor.numel() == 0:
        return
    size = tensor.element_size()
    needed = tensor.numel() * size
    held = tensor.untyped_storage().nbytes() - tensor.storage_offset() * size
    repeated = any(stride == 0 and length > 1
                   for stride, length in zip(tensor.stride(), tensor.shape, strict=True))
    if held < needed or repeated:
        how = "repeats one stored value along a dimension (stride 0)" if repeated else \
            f"has {held:,} bytes of storage"
        raise CheckpointError(
            f"{path}: {key} is not real weights: it claims shape {tuple(tensor.shape)} "
            f"({needed:,} bytes) but {how}; official files store every weight, and this one "
            "would make the import build a network as large as the shape claims")


def _globals(path: Path) -> list[str]:
    """``module.name`` of every global the file's pickles name, read without unpickling."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((name for name in archive.namelist()
                               if name == "data.pkl" or name.endswith("/data.pkl")), None)
                if member is None:
                    return []
                with archive.open(member) as stream:
                    return list(_stream_globals(stream, pickles=1))
        with path.open("rb") as stream:
            # torch.save's legacy format: magic number, protocol, system info, then the object.
            return list(_stream_globals(stream, pickles=4))
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return []


def _stream_globals(stream: IO[bytes], pickles: int) -> Iterator[str]:
    seen = 0
    for _ in range(pickles):
        strings: list[str] = []
        memo: dict[int, str] = {}
        memoized = 0
        pushed: str | None = None  # the string the previous opcode pushed, if it did
        try:
            for opcode, arg, _position in pickletools.genops(stream):
                seen += 1
                if seen > _MAX_OPCODES:
                    return
                if opcode.name == "MEMOIZE":
                    if pushed is not None:
                        memo[memoized] = pushed
                    memoized += 1
                    continue
                if opcode.name in ("BINPUT", "LONG_BINPUT") and isinstance(arg, int):
                    if pushed is not None:
                        memo[arg] = pushed
                    continue
                pushed = None
                if opcode.name == "GLOBAL" and isinstance(arg, str):
                    yield arg.replace(" ", ".", 1)
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    yield f"{strings[-2]}.{strings[-1]}"
                elif isinstance(arg, str) and "UNICODE" in opcode.name:
                    pushed = arg
                elif opcode.name in ("BINGET", "LONG_BINGET") and arg in memo:
                    pushed = memo[arg]
                if pushed is not None:
                    strings.append(pushed)
        except (ValueError, EOFError, UnicodeDecodeError):
            return
