"""Recognising the PyTorch files people hand imtrans in place of a checkpoint.

An official pix2pix / CycleGAN ``latest_net_G.pth`` is a pickle written by ``torch.save``; an
``imtrans export --format torchscript`` file is a TorchScript archive. Neither is a safetensors
checkpoint, and neither is ever unpickled here. :func:`foreign_file_message` looks at the first
bytes (and, for a zip archive, the member names: nothing is decompressed or executed) and says
in one line what the file is and what to do with it, so every command that reads checkpoints
can answer with that instead of a safetensors header error.

Example:
    >>> foreign_file_message(Path("latest_net_G.pth"))  # doctest: +SKIP
    'latest_net_G.pth is a PyTorch pickle (torch.save), such as an official ...'
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

__all__ = ["foreign_file_message", "is_torch_pickle", "official_folder_message",
           "suggested_run_name"]

_ZIP_MAGIC = b"PK\x03\x04"
#: The files of an official checkpoint folder (as :mod:`imtrans.zoo.importer` reads them).
_OFFICIAL_FILE = re.compile(r"(latest|\d+)_net_(G_A|G_B|D_A|D_B|G|D)\.pth")
_OPTION_FILES = ("train_opt.txt", "test_opt.txt")
#: Entries of a folder looked at for official files: a folder of images is not read whole.
_MAX_LISTED = 10_000
# torch.save's legacy format and plain pickles start with the PROTO opcode, protocol 2 to 5.
_PICKLE_STARTS = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))


def _zip_members(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def _kind(path: Path) -> str | None:
    """``"pickle"`` (torch.save), ``"torchscript"``, or None for anything else."""
    try:
        with path.open("rb") as handle:
            start = handle.read(4)
    except OSError:
        return None
    if start.startswith(_PICKLE_STARTS):
        return "pickle"
    if start == _ZIP_MAGIC:
        members = _zip_members(path)
        if any(name.endswith("/constants.pkl") or "/code/" in name for name in members):
            return "torchscript"
        if any(name.endswith("/data.pkl") or name == "data.pkl" for name in members):
            return "pickle"
    return None


def is_torch_pickle(path: Path) -> bool:
    """Whether ``path`` is a file ``torch.save`` wrote (zip or legacy format).

    Example:
        >>> is_torch_pickle(Path("runs/x/checkpoints/step_00000010.safetensors"))  # doctest: +SKIP
        False
    """
    return _kind(Path(path)) == "pickle"


def suggested_run_name(path: Path) -> str:
    """A run name for an official file: its folder's name without the ``_pretrained`` the
    official download scripts add (``checkpoints/horse2zebra_pretrained/latest_net_G.pth``
    -> ``horse2zebra``), else the file's own stem.

    Example:
        >>> suggested_run_name(Path("checkpoints/horse2zebra_pretrained/latest_net_G.pth"))
        'horse2zebra'
        >>> suggested_run_name(Path("style_monet.pth"))
        'style_monet'
    """
    folder = path.parent.name
    return folder.removesuffix("_pretrained") if folder and folder != "." else path.stem


def official_folder_message(path: Path) -> str | None:
    """One line saying how to import the official pix2pix / CycleGAN checkpoint folder
    ``path`` (``<epoch>_net_<X>.pth`` files and/or ``train_opt.txt``), or None when it is not
    one. Only names are listed: nothing is opened.

    Example:
        >>> official_folder_message(Path("checkpoints/horse2zebra_pretrained"))  # doctest: +SKIP
        'checkpoints/horse2zebra_pretrained is an official pix2pix/CycleGAN checkpoint ...'
    """
    path = Path(path)
    try:
        names = [entry.name for _, entry in zip(range(_MAX_LISTED), path.iterdir(), strict=False)]
    except OSError:
        return None
    found = sorted(name for name in names if _OFFICIAL_FILE.fullmatch(name)
                   or name in _OPTION_FILES)
    if not found:
        return None
    target = f"runs/{path.name.removesuffix('_pretrained') or 'imported'}"
    return (f"{path} is an official pix2pix/CycleGAN checkpoint folder ({', '.join(found[:3])}"
            f"{', ...' if len(found) > 3 else ''}), not an imtrans run: convert it once with "
            f"`imtrans import {path} {target}` and use {target} instead")


def foreign_file_message(path: Path) -> str | None:
    """One line saying what the PyTorch file ``path`` is and how to use it with imtrans, or
    None when it is not a ``torch.save`` pickle or a TorchScript archive."""
    path = Path(path)
    kind = _kind(path)
    if kind == "pickle":
        target = f"runs/{suggested_run_name(path)}"
        return (f"{path} is a PyTorch pickle (torch.save), such as an official pix2pix/CycleGAN "
                f"latest_net_G.pth, not an imtrans checkpoint; imtrans never unpickles files "
                f"it loads: convert it once with `imtrans import {path} {target}` and use "
                f"{target} instead")
    if kind == "torchscript":
        return (f"{path} is a TorchScript archive (an `imtrans export` or torch.jit.save "
                "file), not a checkpoint: run it with torch.jit.load, or give this command "
                "the checkpoint or run directory it was exported from")
    return None
