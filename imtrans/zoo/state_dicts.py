"""Reading an official ``.pth`` safely and fitting its state dict to an imtrans network.

Official checkpoints are ``torch.save(net.state_dict())`` pickles. They are read with
``torch.load(..., weights_only=True)`` only: torch's restricted unpickler, which builds tensors
and plain containers and refuses every other global, so a file whose pickle would call a
function (``os.system``...) fails before anything runs. Never a full unpickle.

The state-dict keys of imtrans's networks are the official ones, so a state dict loads
unchanged, with four adjustments the official loader makes or needs:

- a ``module.`` prefix on every key (a network saved inside ``DataParallel``) is removed;
- running statistics of instance-norm layers (written by PyTorch before 0.4, and still in
  some official pretrained files) are dropped, as the official ``load_networks`` does;
- batch norm saved by PyTorch 0.4.0 or older has no ``num_batches_tracked``; torch's own
  loader (so the official ``test.py``) fills it in, and so does the import, with 0 (the count
  only matters to batch norm with ``momentum=None``, which no official network uses);
- with ``norm = "none"`` the official networks have no bias in the convs that a norm would
  follow (a quirk of their ``use_bias`` test); imtrans keeps those biases, so they are loaded
  as zeros, which gives the same outputs.

Everything else is strict: a missing or unexpected key, or a shape that differs, is an error
that names the network and the keys.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from imtrans.core.regular_files import check_regular_file
from imtrans.core.state_tensors import check_module_shapes
from imtrans.errors import CheckpointError
from imtrans.zoo.pth_checks import (
    check_load_size,
    check_real_storage,
    refused_pickle_message,
    unreadable_file_message,
)

__all__ = ["FittedState", "fit_state_dict", "read_official_state_dict"]

_INSTANCE_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _load_failure(exc: BaseException) -> str:
    """torch.load's failure in one printable line of bounded length."""
    text = str(exc).strip()
    if "storage has wrong byte size" in text:
        # torch's own text is "expected %ld got %ld<digits>" (a format that never ran), and an
        # old-format file says this when a storage's declared size is not what it holds.
        return ("a tensor's storage holds another number of bytes than the file declares for "
                "it (a damaged or altered file)")
    line = text.splitlines()[0] if text else type(exc).__name__
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line if len(line) <= 200 else line[:200] + "..."


def read_official_state_dict(path: Path) -> dict[str, Tensor]:
    """The state dict in an official ``.pth`` file, read with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, empty, a Git LFS pointer or unreadable, its
            pickle asks for anything but tensors and containers (refused before it runs:
            a whole pickled model is named by its class), it holds no state dict, or a
            tensor's storage cannot hold its shape (see :mod:`imtrans.zoo.pth_checks`).

    Example:
        >>> read_official_state_dict(Path("latest_net_G.pth"))["model.1.weight"].shape
        ... # doctest: +SKIP
        torch.Size([64, 3, 7, 7])
    """
    path = Path(path)
    check_regular_file(path, what="official checkpoint", error=CheckpointError)
    unreadable = unreadable_file_message(path)  # empty, or a Git LFS pointer
    if unreadable is not None:
        raise CheckpointError(unreadable)
    check_load_size(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except pickle.UnpicklingError as exc:
        # weights_only refuses globals such as os.system before calling them.
        raise CheckpointError(refused_pickle_message(path, exc)) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch file: {_load_failure(exc)}"
                              ) from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(
            loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]  # a training script's {"state_dict": ...} wrapper
    if not isinstance(loaded, Mapping) or not loaded:
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a network's state "
                              "dict (a mapping of names to tensors)")
    state = {}
    for key, value in loaded.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: an entry's name is {_shown(key)} "
                                  f"({type(key).__name__}), not a string; a state dict maps "
                                  "names to tensors")
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: entry {_shown(key)} holds {type(value).__name__}, "
                                  "not a tensor; a state dict maps names to tensors")
        check_real_storage(path, key, value)
        state[key] = value
    if all(key.startswith("module.") for key in state):
        # Saved from DataParallel: the keys are the network's behind "module.". Removed here,
        # before anything reads the architecture off them.
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def _shown(key: object) -> str:
    """A key for a message: its repr, cut short (a file can hold a name of any length)."""
    text = repr(key)
    return text if len(text) <= 80 else f"{text[:77]}..."


@dataclass(frozen=True)
class FittedState:
    """A state dict made to fit a network, and what was changed on the way.

    Attributes:
        tensors: The state dict, key for key the network's.
        zero_biases: Conv biases the file lacked and were filled with zeros (``norm none``).
        dropped_statistics: Instance-norm running statistics dropped (old PyTorch files).
        filled_batch_counts: Batch-norm ``num_batches_tracked`` the file lacked (PyTorch
            0.4.0 and older), filled with 0.
    """

    tensors: dict[str, Tensor]
    zero_biases: int
    dropped_statistics: int
    filled_batch_counts: int = 0


def _instance_norms(network: nn.Module) -> set[str]:
    return {name for name, module in network.named_modules()
            if isinstance(module, nn.modules.instancenorm._InstanceNorm)
            and not module.track_running_stats}


def fit_state_dict(state: Mapping[str, Tensor], network: nn.Module, *, role: str,
                   norm: str) -> FittedState:
    """Fit an official state dict to ``network`` (see the module docstring), strictly.

    Args:
        state: The official state dict.
        network: The imtrans network it is for (may live on the meta device).
        role: The network's role, for messages (``gen_ab``...).
        norm: The networks' norm; ``"none"`` allows missing conv biases (loaded as zeros).

    Raises:
        CheckpointError: keys or shapes differ beyond those adjustments.
    """
    tensors = dict(state)
    if tensors and all(key.startswith("module.") for key in tensors):
        tensors = {key.removeprefix("module."): value for key, value in tensors.items()}
    expected = network.state_dict()
    instance_norms = _instance_norms(network)
    dropped = 0
    for key in [k for k in tensors if k not in expected]:
        owner, _, leaf = key.rpartition(".")
        if leaf in _INSTANCE_NORM_STATS and owner in instance_norms:
            del tensors[key]
            dropped += 1
    filled = 0
    for key in expected:
        owner = key.removesuffix(".num_batches_tracked")
        if owner != key and key not in tensors and f"{owner}.running_mean" in tensors:
            tensors[key] = torch.tensor(0, dtype=torch.long)
            filled += 1
    zero_biases = 0
    if norm == "none":
        for key, want in expected.items():
            owner = key.removesuffix(".bias")
            if key.endswith(".bias") and key not in tensors and f"{owner}.weight" in tensors:
                tensors[key] = torch.zeros(want.shape, dtype=tensors[f"{owner}.weight"].dtype)
                zero_biases += 1
    prefixed = {f"net.{role}.{key}": value for key, value in tensors.items()}
    check_module_shapes(f"net.{role}", network, prefixed)
    return FittedState(tensors, zero_biases, dropped, filled)
