"""The official code's options (``train_opt.txt``) and the recipe tables they mean.

The official ``train.py`` writes every option it ran with to ``checkpoints/<name>/
train_opt.txt``, one ``name: value`` line each (with ``[default: ...]`` after values that
differ from the default). :func:`read_train_opt` reads that file; :func:`recipe_from_options`
turns the options into a raw recipe for :func:`imtrans.catalogue.recipe_loader.recipe_from_dict`.
Only the options that decide the networks, the losses, the data and the schedule are read; display,
GPU and path options are ignored. An option left out keeps the imtrans trainer's default,
which is the paper's (and the official code's for that model).

Example:
    >>> raw = recipe_from_options({"model": "pix2pix", "netG": "unet_128", "norm": "batch"})
    >>> raw["trainer"], raw["generator"]
    ({'name': 'pix2pix'}, {'name': 'unet_128', 'norm': 'batch'})
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imtrans.core.regular_files import read_regular_file
from imtrans.errors import CheckpointError

__all__ = ["IMPORTED_OPTIONS", "official_trainer", "read_train_opt", "recipe_from_options"]

#: The official model names and the trainer each is; ``test`` is the one-generator test model
#: the CycleGAN pretrained files are run with.
_MODELS = {"cycle_gan": "cyclegan", "test": "cyclegan", "pix2pix": "pix2pix"}
_GENERATORS = ("resnet_9blocks", "resnet_6blocks", "unet_128", "unet_256")
_NORMS = ("batch", "instance", "none", "syncbatch")
_GAN_MODES = {"vanilla": "gan", "lsgan": "lsgan", "wgangp": "wgangp"}
_POLICIES = ("linear", "step", "cosine", "plateau")
_PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")

#: The largest options file read: the official train_opt.txt is about 3 KB.
_MAX_OPTIONS_BYTES = 1 << 20

#: Every option this module reads, for the command line's help and the docs.
IMPORTED_OPTIONS = (
    "model", "netG", "netD", "n_layers_D", "ngf", "ndf", "norm", "no_dropout", "input_nc",
    "output_nc", "direction", "gan_mode", "lambda_L1", "lambda_A", "lambda_B",
    "lambda_identity", "pool_size", "lr", "beta1", "n_epochs", "n_epochs_decay", "lr_policy",
    "lr_decay_iters", "load_size", "crop_size", "preprocess", "no_flip", "batch_size",
    "init_type", "init_gain", "dataroot", "name",
)


def read_train_opt(path: Path) -> dict[str, str]:
    """The options of an official ``train_opt.txt`` (or ``test_opt.txt``) as strings.

    Raises:
        CheckpointError: the file is not a regular file of at most 1 MiB, cannot be read, or
            holds no ``name: value`` line.

    Example:
        >>> read_train_opt(Path("checkpoints/horse2zebra/train_opt.txt"))["netG"]  # doctest: +SKIP
        'resnet_9blocks'
    """
    text = read_regular_file(path, what="file of official options",
                             max_bytes=_MAX_OPTIONS_BYTES,
                             error=CheckpointError).decode("utf-8", errors="replace")
    options: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("---") or ":" not in line:
            continue  # the "----- Options -----" frame
        name, _, value = line.partition(":")
        value = value.split("\t[default:", 1)[0].split("[default:", 1)[0]
        if name.strip():
            options[name.strip()] = value.strip()
    if not options:
        raise CheckpointError(f"{path} holds no 'name: value' lines; expected the official "
                              "train_opt.txt")
    return options


def official_trainer(options: Mapping[str, str]) -> str | None:
    """The imtrans trainer of the options' ``model`` (None when not given).

    Raises:
        CheckpointError: a model imtrans has no trainer for.
    """
    model = options.get("model")
    if model is None:
        return None
    if model not in _MODELS:
        raise CheckpointError(f"model {model!r} is not one imtrans imports; expected one of "
                              f"{', '.join(_MODELS)}")
    return _MODELS[model]


def _choice(options: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    value = options.get(name)
    if value is not None and value not in choices:
        raise CheckpointError(f"official option {name} = {value!r} is not one imtrans knows; "
                              f"expected one of {', '.join(choices)}")
    return value


def _number(options: Mapping[str, str], name: str, kind: type[int] | type[float]
            ) -> int | float | None:
    value = options.get(name)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        raise CheckpointError(f"official option {name} = {value!r} is not a "
                              f"{kind.__name__}") from None


def _flag(options: Mapping[str, str], name: str) -> bool | None:
    value = options.get(name)
    if value is None:
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise CheckpointError(f"official option {name} = {value!r} is not True or False")


def _set(raw: dict[str, Any], table: str, key: str, value: Any) -> None:
    if value is not None:
        raw.setdefault(table, {})[key] = value


def _networks(options: Mapping[str, str], raw: dict[str, Any]) -> None:
    _set(raw, "generator", "name", _choice(options, "netG", _GENERATORS))
    _set(raw, "generator", "ngf", _number(options, "ngf", int))
    no_dropout = _flag(options, "no_dropout")
    _set(raw, "generator", "dropout", None if no_dropout is None else not no_dropout)
    net_d = _choice(options, "netD", ("basic", "n_layers", "pixel"))
    if net_d is not None:
        _set(raw, "discriminator", "name", "pixel" if net_d == "pixel" else "patchgan")
        if net_d == "basic":
            _set(raw, "discriminator", "n_layers", 3)
        elif net_d == "n_layers":
            _set(raw, "discriminator", "n_layers", _number(options, "n_layers_D", int))
    _set(raw, "discriminator", "ndf", _number(options, "ndf", int))
    for table in ("generator", "discriminator"):
        _set(raw, table, "norm", _choice(options, "norm", _NORMS))
        _set(raw, table, "init", _choice(options, "init_type",
                                         ("normal", "xavier", "kaiming", "orthogonal")))
        _set(raw, table, "init_gain", _number(options, "init_gain", float))


def _losses(options: Mapping[str, str], raw: dict[str, Any], trainer: str) -> None:
    gan = _choice(options, "gan_mode", tuple(_GAN_MODES))
    if gan is not None:
        raw.setdefault("losses", {})["adversarial"] = {"name": _GAN_MODES[gan]}
    if trainer == "pix2pix":
        weight = _number(options, "lambda_L1", float)
        if weight is not None:
            raw.setdefault("losses", {})["reconstruction"] = {"name": "l1", "weight": weight}
        return
    lambda_a, lambda_b = _number(options, "lambda_A", float), _number(options, "lambda_B", float)
    identity = _number(options, "lambda_identity", float)
    if lambda_a is None and lambda_b is None and identity is None:
        return
    # The official cycle terms weigh lambda_A (domain A) and lambda_B (domain B); the identity
    # terms lambda_identity times the weight of the domain they compare with.
    lambda_a = 10.0 if lambda_a is None else lambda_a
    lambda_b = lambda_a if lambda_b is None else lambda_b
    identity = 0.5 if identity is None else identity
    # One weight per term, and factors per domain relative to it (1 when both are equal).
    base = lambda_a or lambda_b
    losses = raw.setdefault("losses", {})
    losses["cycle"] = {"name": "cycle", "weight": base}
    losses["identity"] = {"name": "identity", "weight": base * identity}
    if lambda_b != lambda_a:
        _set(raw, "trainer", "weight_a", lambda_a / base)
        _set(raw, "trainer", "weight_b", lambda_b / base)


def _data(options: Mapping[str, str], raw: dict[str, Any]) -> None:
    _set(raw, "data", "direction", _choice(options, "direction", ("AtoB", "BtoA")))
    _set(raw, "data", "in_channels", _number(options, "input_nc", int))
    _set(raw, "data", "out_channels", _number(options, "output_nc", int))
    _set(raw, "data", "load_size", _number(options, "load_size", int))
    _set(raw, "data", "crop_size", _number(options, "crop_size", int))
    _set(raw, "data", "preprocess", _choice(options, "preprocess", _PREPROCESS))
    no_flip = _flag(options, "no_flip")
    _set(raw, "data", "flip", None if no_flip is None else not no_flip)
    _set(raw, "data", "batch_size", _number(options, "batch_size", int))
    _set(raw, "data", "root", options.get("dataroot"))


def _training(options: Mapping[str, str], raw: dict[str, Any], trainer: str) -> None:
    if trainer == "cyclegan" or options.get("pool_size") is not None:
        _set(raw, "trainer", "pool_size", _number(options, "pool_size", int))
    _set(raw, "optim", "lr", _number(options, "lr", float))
    beta1 = _number(options, "beta1", float)
    _set(raw, "optim", "betas", None if beta1 is None else [beta1, 0.999])
    _set(raw, "schedule", "n_epochs", _number(options, "n_epochs", int))
    _set(raw, "schedule", "n_epochs_decay", _number(options, "n_epochs_decay", int))
    _set(raw, "schedule", "policy", _choice(options, "lr_policy", _POLICIES))
    _set(raw, "schedule", "step_size", _number(options, "lr_decay_iters", int))


def recipe_from_options(options: Mapping[str, str], *, trainer: str | None = None
                        ) -> dict[str, Any]:
    """A raw recipe (for :func:`imtrans.catalogue.recipe_loader.recipe_from_dict`) from official
    options.

    Args:
        options: Official option names and values as strings (``train_opt.txt``).
        trainer: The imtrans trainer, when known from the files (default: the options'
            ``model``, else ``cyclegan``).

    Raises:
        CheckpointError: a value imtrans has no counterpart for (naming the option).
    """
    trainer = trainer or official_trainer(options) or "cyclegan"
    raw: dict[str, Any] = {"trainer": {"name": trainer}}
    if options.get("name"):
        raw["run"] = {"name": options["name"]}
    _networks(options, raw)
    _losses(options, raw, trainer)
    _data(options, raw)
    _training(options, raw, trainer)
    return raw
