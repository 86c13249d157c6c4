"""Reading an official ``.pth`` safely and fitting its state dict to an imtrans network.

Official checkpoints are ``torch.save(net.state_dict())`` pickles. They are read with
``torch.load(..., weights_only=True)`` only: torch's restricted unpickler, which builds tensors
and plain containers and refuses every other global, so a file whose pickle would call a
function (``os.system``...) fails before anything runs. Never a full unpickle.

The state-dict keys of imtrans's networks are the official ones, so a state dict loads
unchanged, with three adjustments the official loader makes or needs:

- a ``module.`` prefix on every key (a network saved inside ``DataParallel``) is removed;
- running statistics of instance-norm layers (written by PyTorch before 0.4, and still in
  some official pretrained files) are dropped, as the official ``load_networks`` does;
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

from imtrans.checkpoint.tensors import check_module_shapes
from imtrans.errors import CheckpointError

__all__ = ["FittedState", "fit_state_dict", "read_official_state_dict"]

_INSTANCE_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


def read_official_state_dict(path: Path) -> dict[str, Tensor]:
    """The state dict in an official ``.pth`` file, read with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing or unreadable, its pickle asks for anything but
            tensors and containers (refused before it runs), or it holds no state dict.

    Example:
        >>> read_official_state_dict(Path("latest_net_G.pth"))["model.1.weight"].shape
        ... # doctest: +SKIP
        torch.Size([64, 3, 7, 7])
    """
    path = Path(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except pickle.UnpicklingError as exc:
        # weights_only refuses globals such as os.system before calling them.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} was refused: its pickle asks for more than tensors and plain containers "
            f"({first}); imtrans reads .pth files with torch.load(weights_only=True) only, so "
            "nothing in it ran") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch file: {exc}") from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(
            loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]  # a training script's {"state_dict": ...} wrapper
    if not isinstance(loaded, Mapping) or not loaded:
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a network's state "
                              "dict (a mapping of names to tensors)")
    state = {}
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}; a state "
                                  "dict maps names to tensors")
        state[key] = value
    return state


@dataclass(frozen=True)
class FittedState:
    """A state dict made to fit a network, and what was changed on the way.

    Attributes:
        tensors: The state dict, key for key the network's.
        zero_biases: Conv biases the file lacked and were filled with zeros (``norm none``).
        dropped_statistics: Instance-norm running statistics dropped (old PyTorch files).
    """

    tensors: dict[str, Tensor]
    zero_biases: int
    dropped_statistics: int


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
    zero_biases = 0
    if norm == "none":
        for key, want in expected.items():
            owner = key.removesuffix(".bias")
            if key.endswith(".bias") and key not in tensors and f"{owner}.weight" in tensors:
                tensors[key] = torch.zeros(want.shape, dtype=tensors[f"{owner}.weight"].dtype)
                zero_biases += 1
    prefixed = {f"net.{role}.{key}": value for key, value in tensors.items()}
    check_module_shapes(f"net.{role}", network, prefixed)
    return FittedState(tensors, zero_biases, dropped)
