"""Training state as flat tensors plus JSON, the two halves a checkpoint stores.

Networks, optimisers and random number generators are turned into ``{name: tensor}`` mappings
whose names carry a component prefix (``gen_ab.model.1.weight``, ``opt_g.state.0.exp_avg``,
``rng.torch``) and, where needed, a JSON-serialisable part for the manifest. Restoring is strict:
a checkpoint that does not fit the recipe's networks is refused with a message that names the
component and the keys or shapes that differ.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from imtrans.errors import CheckpointError

__all__ = [
    "assign_module_tensors",
    "check_module_shapes",
    "load_module_tensors",
    "load_optimizer_tensors",
    "module_tensors",
    "optimizer_tensors",
    "restore_rng",
    "rng_tensors",
    "tensors_with_prefix",
]


def tensors_with_prefix(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors named ``prefix.<rest>``, keyed by ``<rest>``.

    Example:
        >>> tensors_with_prefix({"g.w": torch.zeros(1), "d.w": torch.ones(1)}, "g")
        {'w': tensor([0.])}
    """
    start = f"{prefix}."
    return {name[len(start) :]: t for name, t in tensors.items() if name.startswith(start)}


def _some(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def module_tensors(prefix: str, module: nn.Module) -> dict[str, Tensor]:
    """A module's state dict with every key under ``prefix.``.

    The tensors are the module's own, not copies: save them before the next update.

    Raises:
        CheckpointError: The state dict holds a non-tensor entry (extra state).

    Example:
        >>> sorted(module_tensors("gen", nn.Linear(2, 1)))
        ['gen.bias', 'gen.weight']
    """
    out: dict[str, Tensor] = {}
    for key, value in module.state_dict().items():
        if not isinstance(value, Tensor):
            raise CheckpointError(
                f"{prefix}: state {key!r} is a {type(value).__name__}; only tensors can be stored"
            )
        out[f"{prefix}.{key}"] = value
    return out


def check_module_shapes(prefix: str, module: nn.Module, tensors: Mapping[str, Tensor]) -> None:
    """Check that the ``prefix.*`` tensors are exactly ``module``'s state, key for key and
    shape for shape, without loading them; ``module`` may live on the meta device.

    Raises:
        CheckpointError: Keys are missing or unexpected, or shapes differ; the message names
            ``prefix`` and lists the first few differences.

    Example:
        >>> check_module_shapes("gen", nn.Linear(2, 1), module_tensors("gen", nn.Linear(2, 1)))
    """
    given = tensors_with_prefix(tensors, prefix)
    expected = module.state_dict()
    problems = []
    missing = [key for key in expected if key not in given]
    unexpected = sorted(key for key in given if key not in expected)
    if missing:
        problems.append(f"missing from the checkpoint: {_some(missing)}")
    if unexpected:
        problems.append(f"in the checkpoint but not in the recipe's network: {_some(unexpected)}")
    for key, want in expected.items():
        if key in given and isinstance(want, Tensor) and given[key].shape != want.shape:
            problems.append(
                f"shape of {key} is {tuple(given[key].shape)} in the checkpoint but "
                f"{tuple(want.shape)} in the recipe's network"
            )
            if len(problems) >= 7:
                break
    if problems:
        raise CheckpointError(f"{prefix}: " + "; ".join(problems))


def load_module_tensors(prefix: str, module: nn.Module, tensors: Mapping[str, Tensor]) -> None:
    """Load ``prefix.*`` tensors into ``module`` strictly.

    Raises:
        CheckpointError: Keys are missing or unexpected, or shapes differ (see
            :func:`check_module_shapes`), or a tensor cannot be loaded.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> load_module_tensors("gen", net, module_tensors("gen", nn.Linear(2, 1)))
    """
    check_module_shapes(prefix, module, tensors)
    given = tensors_with_prefix(tensors, prefix)
    try:
        module.load_state_dict(given, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{prefix}: could not load the checkpoint's tensors: {exc}") from exc


def assign_module_tensors(prefix: str, module: nn.Module, tensors: Mapping[str, Tensor]) -> bool:
    """Make copies of the ``prefix.*`` tensors ``module``'s parameters and buffers, when they
    are all of its tensor state; for a network laid out on the meta device, this builds it
    without allocating and randomly initialising weights that the checkpoint replaces. The
    copies are in memory torch allocates (aligned as any tensor's: a file's tensors need not
    be, and some math libraries' rounding depends on alignment).

    Returns ``False``, and the module must then be built and loaded the usual way, when the
    module holds tensors the checkpoint cannot give it: non-persistent buffers (made by its
    constructor), tensors kept in plain attributes, one tensor under two names, or a key,
    shape or type that differs from the checkpoint's. The module is then of no further use.

    Example:
        >>> with torch.device("meta"):
        ...     net = nn.Linear(2, 1)
        >>> assign_module_tensors("gen", net, module_tensors("gen", nn.Linear(2, 1)))
        True
    """
    given = tensors_with_prefix(tensors, prefix)
    for part in module.modules():
        if part._non_persistent_buffers_set or \
                any(isinstance(value, Tensor) for value in vars(part).values()):
            return False
    state = module.state_dict(keep_vars=True)
    if set(state) != set(given) or len({id(value) for value in state.values()}) != len(state):
        return False
    for key, value in state.items():
        if not isinstance(value, Tensor) or (value.shape, value.dtype) != \
                (given[key].shape, given[key].dtype):
            return False
    try:
        module.load_state_dict({key: value.clone() for key, value in given.items()},
                               strict=True, assign=True)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


# Optimiser state is nested (dicts, lists, tuples, numbers, tensors). It is written as JSON in
# which a tensor becomes {"__tensor__": name}, a tuple {"__tuple__": [...]} and a non-finite
# float {"__float__": "inf"}, so that restoring gives back exactly the same types.
def _encode(value: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(value, Tensor):
        tensors[key] = value
        return {"__tensor__": key}
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _encode(v, f"{key}.{k}", tensors) for k, v in value.items()}
    raise CheckpointError(f"{key} is a {type(value).__name__}, which a checkpoint cannot store")


def _decode(value: Any, tensors: Mapping[str, Tensor], where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((marker, inner),) = value.items()
        if marker == "__tensor__":
            if inner not in tensors:
                raise CheckpointError(f"{where}: the checkpoint lacks the tensor {inner!r}")
            return tensors[inner].clone()  # The optimiser updates it in place; keep ours intact.
        if marker == "__tuple__":
            return tuple(_decode(v, tensors, where) for v in inner)
        if marker == "__float__":
            return float(inner)
    return {k: _decode(v, tensors, where) for k, v in value.items()}


def optimizer_tensors(
    prefix: str, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimiser's state dict into tensors and a JSON-serialisable part.

    Per-parameter tensors are named ``prefix.state.<param_index>.<name>`` (``exp_avg``,
    ``step``...); non-tensor state and the param groups go into the JSON part. The tensors are
    the optimiser's own, not copies: save them before the next step.

    Example:
        >>> opt = torch.optim.Adam(nn.Linear(2, 1).parameters())
        >>> tensors, meta = optimizer_tensors("opt", opt)
        >>> sorted(meta)
        ['param_groups', 'state']
    """
    state_dict = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    state = [
        [index, _encode(values, f"{prefix}.state.{index}", tensors)]
        for index, values in state_dict["state"].items()
    ]
    groups = _encode(state_dict["param_groups"], f"{prefix}.param_groups", tensors)
    return tensors, {"state": state, "param_groups": groups}


def load_optimizer_tensors(
    prefix: str,
    optimizer: torch.optim.Optimizer,
    tensors: Mapping[str, Tensor],
    meta: Mapping[str, Any],
) -> None:
    """Restore an optimiser from :func:`optimizer_tensors` output, dtypes and shapes included.

    Load the networks first: the optimiser's parameters must already have the saved shapes.

    Raises:
        CheckpointError: The JSON part is malformed, a tensor is missing, or the parameter
            groups differ from the optimiser's.

    Example:
        >>> opt = torch.optim.Adam(nn.Linear(2, 1).parameters())
        >>> load_optimizer_tensors("opt", opt, *optimizer_tensors("opt", opt))
    """
    if not isinstance(meta, Mapping) or not isinstance(meta.get("state"), list):
        raise CheckpointError(f"{prefix}: optimiser metadata must hold 'state' and 'param_groups'")
    groups = _decode(meta.get("param_groups"), tensors, prefix)
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise CheckpointError(f"{prefix}: 'param_groups' in the checkpoint is not a list of dicts")
    saved_sizes = [len(g.get("params", ())) for g in groups]
    own_sizes = [len(g["params"]) for g in optimizer.param_groups]
    if saved_sizes != own_sizes:
        raise CheckpointError(
            f"{prefix}: the checkpoint's optimiser has parameter groups of sizes {saved_sizes}, "
            f"the recipe's has {own_sizes}"
        )
    for saved, own in zip(groups, optimizer.param_groups, strict=True):
        # How the update runs (fused kernel, foreach, capturable for CUDA graphs) belongs to
        # this process's [speed] settings, not to the training state: keep the optimiser's.
        saved.update({k: own[k] for k in _RUNTIME_KEYS if k in own})
    state: dict[Any, Any] = {}
    for entry in meta["state"]:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
            raise CheckpointError(f"{prefix}: malformed optimiser state entry {entry!r:.80}")
        state[entry[0]] = _decode(entry[1], tensors, prefix)
    _check_state_shapes(prefix, optimizer, groups, state)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{prefix}: could not restore the optimiser: {exc}") from exc


def _check_state_shapes(prefix: str, optimizer: torch.optim.Optimizer, groups: list[Any],
                        state: Mapping[Any, Any]) -> None:
    """Refuse per-parameter state (Adam's moments...) whose shape is not its parameter's.

    ``load_state_dict`` takes any shape, and the first step after the resume would fail deep
    inside the optimiser. Scalars (such as Adam's ``step``) are left alone.
    """
    saved_ids = [i for group in groups for i in group.get("params", ())]
    own = [p for group in optimizer.param_groups for p in group["params"]]
    by_id = dict(zip(saved_ids, own, strict=False))  # how load_state_dict pairs them
    for index, values in state.items():
        param = by_id.get(index)
        if param is None or not isinstance(values, dict):
            continue
        for name, value in values.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape != param.shape:
                raise CheckpointError(
                    f"{prefix}: the checkpoint's {name} of parameter {index} has shape "
                    f"{tuple(value.shape)}, the parameter has {tuple(param.shape)}")


#: Optimiser settings that choose an implementation, not a result.
_RUNTIME_KEYS = ("fused", "foreach", "capturable", "differentiable")


def rng_tensors(prefix: str = "rng") -> dict[str, Tensor]:
    """Capture the global random generators as tensors (no pickle).

    Covers torch's CPU generator, each CUDA device's once CUDA is initialised, Python's
    ``random`` and, when numpy is installed, numpy's legacy global generator.

    Example:
        >>> sorted(rng_tensors())[:2]
        ['rng.numpy.gauss', 'rng.numpy.key']
    """
    out = {f"{prefix}.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            out[f"{prefix}.cuda.{index}"] = state
    version, words, gauss = random.getstate()
    out[f"{prefix}.python.state"] = torch.tensor([version, *words], dtype=torch.int64)
    out[f"{prefix}.python.gauss"] = torch.tensor(
        [] if gauss is None else [gauss], dtype=torch.float64
    )
    try:
        import numpy as np
    except ImportError:
        return out
    algorithm, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    if algorithm == "MT19937":
        out[f"{prefix}.numpy.key"] = torch.from_numpy(np.asarray(key).astype(np.int64))
        out[f"{prefix}.numpy.pos"] = torch.tensor([pos, has_gauss], dtype=torch.int64)
        out[f"{prefix}.numpy.gauss"] = torch.tensor([cached], dtype=torch.float64)
    return out


def restore_rng(tensors: Mapping[str, Tensor], prefix: str = "rng") -> None:
    """Restore the generators captured by :func:`rng_tensors`.

    CUDA states are restored for the devices present; numpy's only if numpy is installed.

    Raises:
        CheckpointError: The torch state is missing or any state is malformed.

    Example:
        >>> saved = rng_tensors()
        >>> restore_rng(saved)
    """
    rng = {name: t.detach().cpu() for name, t in tensors_with_prefix(tensors, prefix).items()}
    if "torch" not in rng:
        raise CheckpointError(f"the checkpoint has no random generator state ({prefix}.torch)")
    try:
        torch.set_rng_state(rng["torch"])
        cuda = sorted(int(k.split(".")[1]) for k in rng if k.startswith("cuda."))
        if cuda and torch.cuda.is_available():
            for index in cuda[: torch.cuda.device_count()]:
                torch.cuda.set_rng_state(rng[f"cuda.{index}"], index)
        if "python.state" in rng:
            version, *words = (int(v) for v in rng["python.state"].tolist())
            gauss = rng["python.gauss"].tolist() if "python.gauss" in rng else []
            random.setstate((version, tuple(words), gauss[0] if gauss else None))
        if "numpy.key" in rng:
            _restore_numpy(rng)
    except (RuntimeError, ValueError, TypeError, OverflowError, KeyError) as exc:
        raise CheckpointError(
            f"the checkpoint's random generator state is malformed: {exc}"
        ) from exc


def _restore_numpy(rng: Mapping[str, Tensor]) -> None:
    try:
        import numpy as np
    except ImportError:
        return  # Saved with numpy, resumed without it: nothing uses numpy's generator now.
    key = rng["numpy.key"]
    if key.numel() and (int(key.min()) < 0 or int(key.max()) >= 2**32):
        raise ValueError("numpy's MT19937 key words must be 32-bit unsigned")
    pos, has_gauss = (int(v) for v in rng["numpy.pos"].tolist())
    cached = float(rng["numpy.gauss"].item())
    np.random.set_state(("MT19937", key.numpy().astype(np.uint32), pos, has_gauss, cached))
