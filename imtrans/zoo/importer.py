"""``imtrans import``: official pix2pix / CycleGAN checkpoints to an imtrans run directory.

The source is one ``.pth`` file or an official checkpoint folder (``latest_net_G_A.pth``,
``latest_net_G_B.pth``, ``latest_net_D_A.pth``, ``latest_net_D_B.pth`` for CycleGAN;
``latest_net_G.pth``, ``latest_net_D.pth`` for pix2pix; ``<epoch>_net_*.pth`` for other
epochs), with the official ``train_opt.txt`` beside it when there is one. Options given by the
caller override the file's. The roles map as the official code names them:

============  =======================  ==============
official      judges / translates      imtrans role
============  =======================  ==============
``G_A``       A -> B                   ``gen_ab``
``G_B``       B -> A                   ``gen_ba``
``D_A``       domain B (G_A's output)  ``disc_b``
``D_B``       domain A (G_B's output)  ``disc_a``
``G``, ``D``  pix2pix                  ``gen``, ``disc``
============  =======================  ==============

A lone generator file (the official pretrained models are one ``G`` each) becomes the A -> B
generator. The run is built from the recipe the options mean, the official tensors are loaded
strictly (see :mod:`imtrans.zoo.state_dicts`), and a step-0 checkpoint is written with fresh
optimiser state; networks the import did not hold keep their fresh initialisation, and the
manifest's ``imported`` entry records all of it. ``translate``, ``eval`` and ``export`` take
the result as they take any run; ``run --resume`` from it, or ``[init] from`` in a recipe,
fine-tunes it.

Example:
    >>> imported = import_official("checkpoints/h2z", "runs/h2z")  # doctest: +SKIP
    >>> imported.roles["gen_ab"]  # doctest: +SKIP
    PosixPath('checkpoints/h2z/latest_net_G_A.pth')
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from imtrans.catalogue.assembly import build_networks, build_trainer, network_specs
from imtrans.catalogue.plugins import Components, components
from imtrans.catalogue.recipe_loader import recipe_from_dict
from imtrans.core.device import device_memory, seed_everything
from imtrans.core.regular_files import check_regular_file
from imtrans.errors import CheckpointError, RecipeError
from imtrans.recipe import Recipe
from imtrans.runs.checkpoints.files import list_checkpoints
from imtrans.runs.checkpoints.foreign import suggested_run_name
from imtrans.runs.directory import RunDir, write_run_record
from imtrans.runs.file_access import LinkedRunFileError, check_run_dir
from imtrans.runs.lock import LOCK_NAME
from imtrans.runs.output_guard import run_file_of
from imtrans.training import checkpointing as training_checkpoint
from imtrans.training.build import build_training
from imtrans.training.feasibility import check_network_sizes
from imtrans.zoo.infer import discriminator_options, generator_options
from imtrans.zoo.options import official_trainer, read_train_opt, recipe_from_options
from imtrans.zoo.state_dicts import FittedState, fit_state_dict, read_official_state_dict

__all__ = ["Imported", "check_import_target", "find_official_files", "import_official"]

_FILE = re.compile(r"(?P<epoch>latest|\d+)_net_(?P<net>G_A|G_B|D_A|D_B|G|D)\.pth")
_CYCLEGAN_ROLES = {"G_A": "gen_ab", "G_B": "gen_ba", "D_A": "disc_b", "D_B": "disc_a",
                   "G": "gen_ab"}
_PIX2PIX_ROLES = {"G": "gen", "D": "disc"}
_OPTION_FILES = ("train_opt.txt", "test_opt.txt")


@dataclass(frozen=True)
class Imported:
    """What :func:`import_official` built.

    Attributes:
        run_dir: The new run directory.
        checkpoint: Its step-0 checkpoint.
        trainer: ``cyclegan`` or ``pix2pix``.
        roles: Each imported network's role and the official file it came from.
        fresh: Roles the import held no file for: freshly initialised.
        zero_biases: Per role, conv biases loaded as zeros (official ``norm none`` files).
        recipe: The recipe of the run (also in ``run_dir/recipe.toml``).
        options_file: The ``train_opt.txt`` read, if any.
    """

    run_dir: Path
    checkpoint: Path
    trainer: str
    roles: dict[str, Path]
    fresh: list[str]
    zero_biases: dict[str, int]
    recipe: Recipe
    options_file: Path | None


def find_official_files(source: Path, epoch: str = "latest"
                        ) -> tuple[dict[str, Path], Path | None]:
    """The official networks at ``source`` (official name -> file) and its options file.

    A folder gives the files of ``epoch`` (``latest``, else the highest epoch when there is
    no ``latest``); a lone file that is not named ``<epoch>_net_<X>.pth`` is a generator.

    Raises:
        CheckpointError: nothing official at ``source``, or not the epoch asked for.
    """
    source = Path(source)
    if source.is_file():
        match = _FILE.fullmatch(source.name)
        files = {match["net"] if match else "G": source}
        folder = source.parent
    elif source.is_dir():
        folder = source
        by_epoch: dict[str, dict[str, Path]] = {}
        for path in sorted(source.iterdir()):
            match = _FILE.fullmatch(path.name)
            if match:
                # A FIFO, a link loop or a folder of an official name is named, not skipped
                # (which said the folder "holds no official checkpoint files").
                check_regular_file(path, what="official checkpoint", error=CheckpointError)
                by_epoch.setdefault(match["epoch"], {})[match["net"]] = path
        if not by_epoch:
            raise CheckpointError(f"{source} holds no official checkpoint files (expected "
                                  "latest_net_G.pth, latest_net_G_A.pth... or "
                                  "<epoch>_net_*.pth)")
        if epoch == "latest" and "latest" not in by_epoch:
            epoch = max((e for e in by_epoch if e.isdigit()), key=int)
        if epoch not in by_epoch:
            raise CheckpointError(f"{source} has no epoch {epoch!r}; it has "
                                  f"{', '.join(sorted(by_epoch))}")
        files = by_epoch[epoch]
    else:  # a FIFO, a device, a link to nothing: say which
        check_regular_file(source, what="official checkpoint", error=CheckpointError)
        raise CheckpointError(f"{source} does not exist")
    # lexists: an options file that is a FIFO or a link loop is named when read, not skipped.
    options = next((folder / name for name in _OPTION_FILES
                    if os.path.lexists(folder / name)), None)
    return files, options


def _trainer_for(files: Mapping[str, Path], options: Mapping[str, str]) -> str:
    """The trainer the files and options mean; refuse a mix that fits none."""
    nets = set(files)
    cyclegan_only = nets & {"G_A", "G_B", "D_A", "D_B"}
    chosen = official_trainer(options)
    if cyclegan_only:
        if "G" in nets or "D" in nets or chosen == "pix2pix":
            raise CheckpointError(f"the files {', '.join(sorted(nets))} mix CycleGAN networks "
                                  "(G_A, G_B, D_A, D_B) with pix2pix ones (G, D) or model "
                                  "pix2pix; import one model at a time")
        return "cyclegan"
    if chosen is not None:
        if chosen == "cyclegan" and "D" in nets:
            raise CheckpointError("a CycleGAN import has D_A and D_B, not one D; for pix2pix "
                                  "set the model to pix2pix")
        return chosen
    # A lone generator: a U-Net is pix2pix's, a ResNet CycleGAN's (one direction of it).
    unet = options.get("netG", "").startswith("unet")
    return "pix2pix" if "D" in nets or unet else "cyclegan"


def _inferred(read: Mapping[str, tuple[Path, dict[str, Tensor]]]) -> dict[str, str]:
    """Options the state dicts show: the first generator's and discriminator's."""
    found: dict[str, str] = {}
    for net in ("D", "D_A", "D_B"):
        if net in read:
            found = discriminator_options(read[net][1])
            break
    for net in ("G", "G_A", "G_B"):
        if net in read:
            return found | generator_options(read[net][1])
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _recipe(options: Mapping[str, str], trainer: str, run_name: str,
            registry: Components) -> Recipe:
    raw = recipe_from_options(options, trainer=trainer)
    raw.setdefault("run", {}).setdefault("name", run_name)
    raw.setdefault("data", {}).setdefault("root", f"datasets/{run_name}")
    try:
        return recipe_from_dict(raw, registry=registry)
    except RecipeError as exc:
        raise CheckpointError(f"the official options do not make a valid recipe: {exc}") from None


def check_import_target(run_dir: Path) -> None:
    """Refuse a run directory an import may not write: one that holds a run, or a file of a
    run's name (``recipe.toml``, ``environment.json``), one inside another run directory
    (its ``checkpoints/``, ``samples/``...; by any path or link), or one whose folders or
    in-place files are links (written through, they would land elsewhere).

    Raises:
        CheckpointError: naming what is there.
    """
    run = RunDir(run_dir)
    if list_checkpoints(run.checkpoints) or run.recipe.exists():
        raise CheckpointError(f"{run_dir} already holds a run ({run.recipe.name} or "
                              "checkpoints); import into a new directory")
    held = [path.name for path in (run.environment, run.metrics, run.train_log,
                                   run_dir / LOCK_NAME) if os.path.lexists(path)]
    if held:  # a run's files, or a user's of their names: never replaced nor joined
        raise CheckpointError(f"{run_dir} already holds {', '.join(held)}, which a new run "
                              "directory does not; import into a new directory")
    owner = run_file_of(run.recipe)
    if owner is not None and owner[1] != run.recipe.name:
        raise CheckpointError(f"{run_dir} lies in {owner[1]} of the run directory {owner[0]}: "
                              "an import never writes into another run's files; import into "
                              "a new directory outside it")
    try:
        check_run_dir(run_dir)
    except LinkedRunFileError as exc:
        raise CheckpointError(str(exc).replace("train into another", "import into another")
                              ) from None


def import_official(source: Path | str, run_dir: Path | str, *,
                    options: Mapping[str, str] | None = None,
                    provenance: Mapping[str, Any] | None = None,
                    registry: Components | None = None, epoch: str = "latest") -> Imported:
    """Turn official checkpoints at ``source`` into the imtrans run directory ``run_dir``.

    Every file is read and fitted before anything is written, so a failed import leaves
    ``run_dir`` as it was.

    Args:
        source: A ``.pth`` file or an official checkpoint folder.
        run_dir: The run directory to create (it may exist, but must hold no run).
        options: Official option names and values (as in ``train_opt.txt``), overriding
            the options file beside ``source``.
        provenance: Recorded in the manifest's ``imported`` entry (a download's URL and
            sha256...).
        registry: The components (default: built-ins and installed plugins).
        epoch: Which epoch of a folder to import (``latest`` or a number).

    Raises:
        CheckpointError: no official files, a pickle that asks for more than tensors, options
            imtrans has no counterpart for, tensors that do not fit the networks (the message
            names the network and the keys), or ``run_dir`` already holds a run.
    """
    registry = registry or components()
    source, run_dir = Path(source), Path(run_dir)
    files, options_file = find_official_files(source, epoch)
    read = {net: (path, read_official_state_dict(path)) for net, path in files.items()}
    given = read_train_opt(options_file) if options_file is not None else {}
    given |= dict(options or {})
    given = _inferred(read) | given  # what the tensors show fills what no option says
    trainer_name = _trainer_for(files, given)
    roles = _PIX2PIX_ROLES if trainer_name == "pix2pix" else _CYCLEGAN_ROLES
    states = {roles[net]: loaded for net, loaded in read.items()}
    recipe = _recipe(given, trainer_name, run_dir.name or suggested_run_name(source), registry)
    check_import_target(run_dir)

    # Nothing the files or options claim is allocated before it is known to be sane: the
    # networks are laid out on the meta device, the files' shapes checked against them, and
    # their size against the memory; only then are they built for real.
    fitted = _fit_on_meta(recipe, registry, trainer_name, states)
    seed_everything(recipe.run.seed)  # the networks the import lacks start as a run would
    training = build_training(recipe, registry, device=torch.device("cpu"), data=False,
                              speed=False, check=False)  # checked on the meta device above
    for role, fit in fitted.items():
        training.networks[role].load_state_dict(fit.tensors, strict=True)
    zero_biases = {role: fit.zero_biases for role, fit in fitted.items()}
    dropped = sum(fit.dropped_statistics for fit in fitted.values())
    filled = sum(fit.filled_batch_counts for fit in fitted.values())
    fresh = sorted(set(training.networks) - set(states))
    record = {
        "from": "official pytorch-CycleGAN-and-pix2pix checkpoint",
        "source": str(source),
        "files": {role: {"file": path.name, "sha256": _sha256(path)}
                  for role, (path, _) in states.items()},
        "options": given,
        "options_file": str(options_file) if options_file else None,
        "fresh_networks": fresh,
        "zero_biases": {role: n for role, n in zero_biases.items() if n},
        "dropped_instance_norm_statistics": dropped,
        "filled_batch_norm_counts": filled,
        "optimizer_state": "fresh",
        "resume_is": "fine-tuning: optimisers, schedule and step start anew",
    } | dict(provenance or {})
    run_dir.mkdir(parents=True, exist_ok=True)
    environment = write_run_record(run_dir, recipe.resolved(), registry, torch.device("cpu"))
    checkpoint = training_checkpoint.save(RunDir(run_dir).checkpoints, training.trainer,
                                          training.schedule, 0, 1, recipe, environment,
                                          extra={"imported": record})
    return Imported(run_dir=run_dir, checkpoint=checkpoint, trainer=trainer_name,
                    roles={role: path for role, (path, _) in states.items()}, fresh=fresh,
                    zero_biases=zero_biases, recipe=recipe, options_file=options_file)


def _fit_on_meta(recipe: Recipe, registry: Components, trainer_name: str,
                 states: Mapping[str, tuple[Path, dict[str, Tensor]]]) -> dict[str, FittedState]:
    """Fit each file's state dict to its network laid out on the meta device, then check
    that every network the import builds fits in memory; nothing is allocated.

    Raises:
        CheckpointError: a file is for a role the trainer has not, its keys or shapes differ
            from the network the options mean, or the networks cannot fit in memory.
    """
    try:
        trainer = build_trainer(recipe, registry)
        check_network_sizes(recipe, network_specs(trainer, recipe))  # before laying out
        networks = build_networks(recipe, registry, trainer, "meta")
    except RecipeError as exc:
        raise CheckpointError(f"the official options do not make a valid recipe: {exc}") from None
    fitted = {}
    for role, (path, state) in states.items():
        if role not in networks:
            raise CheckpointError(f"{path.name} is for {role}, which {trainer_name} has not")
        section = "generator" if role.startswith("gen") else "discriminator"
        table = getattr(recipe, section)
        try:
            fitted[role] = fit_state_dict(state, networks[role], role=role,
                                          norm=str(table.kwargs.get("norm", "")))
        except CheckpointError as exc:
            raise CheckpointError(f"{path} does not fit the {section} of the options "
                                  f"({table.name}, {_describe_table(table.kwargs)}): {exc}"
                                  ) from None
    _check_memory(networks, states)
    return fitted


def _check_memory(networks: Mapping[str, nn.Module],
                  states: Mapping[str, tuple[Path, dict[str, Tensor]]]) -> None:
    """Refuse networks whose weights, with the files' tensors already read, cannot fit in the
    RAM (a lower bound of what the import takes: nothing that fits is refused)."""
    total = device_memory(torch.device("cpu"))
    counts = {role: sum(p.numel() for p in net.parameters()) for role, net in networks.items()}
    weights = sum(t.numel() * t.element_size() for net in networks.values()
                  for t in net.state_dict().values())
    read = sum(t.numel() * t.element_size() for _, state in states.values()
               for t in state.values())
    if total is None or weights + read <= total:
        return
    each = ", ".join(f"{role} {count:,}" for role, count in counts.items())
    raise CheckpointError(
        f"the networks cannot fit in the memory of the CPU ({total / 2**30:,.1f} GiB): "
        f"{sum(counts.values()):,} parameters ({each}) need at least "
        f"{(weights + read) / 2**30:,.1f} GiB; lower --ngf / --ndf (ngf, ndf in "
        "train_opt.txt)")


def _describe_table(kwargs: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{key} {value}" for key, value in kwargs.items()
                      if key in ("ngf", "ndf", "norm", "dropout", "n_layers"))
    return shown or "defaults"
