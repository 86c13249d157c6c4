"""The run directory: where a run writes its recipe, environment, metrics, samples, checkpoints.

    runs/<name>/
      recipe.toml        the fully resolved recipe (every default written out)
      environment.json   versions of python, torch, imtrans and every plugin; git commit;
                         the data trained on when it is not data.root (a bundled sample)
      metrics.jsonl      one record per logging interval
      samples/           sample grids (input | output | reconstruction) as PNG
      checkpoints/       safetensors checkpoints
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imtrans.core.atomic import atomic_write
from imtrans.core.git_head import head_commit
from imtrans.core.paths import check_run_name, name_bytes
from imtrans.core.printable import printable_path
from imtrans.core.regular_files import why_not_folder
from imtrans.core.tomlwriter import dumps
from imtrans.errors import RecipeError
from imtrans.version import __version__

if TYPE_CHECKING:  # the layout needs neither: readers such as the report stay free of torch
    import torch

    from imtrans.core.components import Components

__all__ = ["MadeRunDir", "RunDir", "check_output_dir", "check_run_name", "create_run_dir",
           "latest_run_dir", "recording_made_run_dirs", "write_run_record"]


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory, by what they hold: the one place that spells the layout.

    Example:
        >>> run = RunDir(Path("runs/cyclegan"))
        >>> run.metrics
        PosixPath('runs/cyclegan/metrics.jsonl')
        >>> run.sample(500)
        PosixPath('runs/cyclegan/samples/step_00000500.png')
        >>> RunDir.of_checkpoint(Path("/runs/cyclegan/checkpoints/step_00000500.safetensors"))
        RunDir(root=PosixPath('/runs/cyclegan'))
    """

    root: Path

    @property
    def recipe(self) -> Path:
        """The fully resolved recipe, as TOML."""
        return self.root / "recipe.toml"

    @property
    def environment(self) -> Path:
        """Versions, device, plugins and git commit, as JSON."""
        return self.root / "environment.json"

    @property
    def metrics(self) -> Path:
        """One JSON record per line: losses, evaluations, rollbacks."""
        return self.root / "metrics.jsonl"

    @property
    def train_log(self) -> Path:
        """The plain-text log: progress lines and notices, time-stamped."""
        return self.root / "train.log"

    @property
    def samples(self) -> Path:
        """The folder of sample grids."""
        return self.root / "samples"

    @property
    def checkpoints(self) -> Path:
        """The folder of checkpoints (and the best one with its record)."""
        return self.root / "checkpoints"

    @property
    def best_checkpoint(self) -> Path:
        """The best-scoring checkpoint of evaluation during training (a hard link)."""
        return self.checkpoints / "best.safetensors"

    @property
    def best_record(self) -> Path:
        """Which step scored best, on what, and how."""
        return self.checkpoints / "best.json"

    @property
    def evaluations(self) -> Path:
        """The folder of ``imtrans eval`` results."""
        return self.root / "eval"

    @property
    def exports(self) -> Path:
        """The folder of ``imtrans export`` files."""
        return self.root / "export"

    @property
    def report(self) -> Path:
        """The self-contained HTML report."""
        return self.root / "report.html"

    def sample(self, step: int) -> Path:
        """The sample grid written after ``step``."""
        return self.samples / f"step_{step:08d}.png"

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> RunDir | None:
        """The run a checkpoint file belongs to (``<run>/checkpoints/<file>``), if any.

        The path as given comes first: were ``checkpoints/`` a link to another folder, the
        resolved path would make that folder's parent the run (and a resume would write
        there). A link to a checkpoint file is followed to its run.
        """
        for path in (Path(os.path.abspath(checkpoint)), checkpoint.resolve()):
            if path.parent.name == "checkpoints":
                return cls(path.parent.parent)
        return None


def check_output_dir(output_dir: Path) -> None:
    """Refuse a ``run.output_dir`` that cannot hold run directories: a file (or a link to
    nothing), a path under a file, or a folder this user cannot write into. A folder that
    does not exist yet is fine when the folder it would be made in can be written.

    Raises:
        RecipeError: naming the key, the path and what it is.
    """
    output_dir = Path(output_dir)
    existing = output_dir
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    shown = printable_path(output_dir)
    reason = why_not_folder(existing)  # a file, a FIFO, a device, a link loop: said which
    if reason is not None:
        what = (reason if existing == output_dir else
                f"is inside {printable_path(existing)}, which {reason}")
        raise RecipeError(f"run.output_dir = {shown!r} {what}: runs are written in a "
                          "folder there; choose another run.output_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == output_dir else f" (made in {printable_path(existing)})"
        raise RecipeError(f"run.output_dir = {shown!r}{where}: this user may not write there; "
                          "choose another run.output_dir")
    long = [part for part in output_dir.relative_to(existing).parts if name_bytes(part) > 255]
    if long:
        raise RecipeError(f"run.output_dir = {shown[:60]!r}...: its folder name "
                          f"{long[0][:40]!r}... is {name_bytes(long[0])} bytes long, and a "
                          "folder name holds at most 255; choose another run.output_dir")
    _try_making_a_folder(existing, output_dir)


def _try_making_a_folder(existing: Path, output_dir: Path) -> None:
    """Make and remove an empty folder in ``existing``, where the run folders will be made:
    write permission does not say everything (``/proc`` and ``/sys`` look writable to root
    and take no folder; a read-only mount, a full inode table)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".imtrans-probe-", dir=existing))
    except OSError as exc:
        where = "" if existing == output_dir else f" (made in {printable_path(existing)})"
        raise RecipeError(f"run.output_dir = {printable_path(output_dir)!r}{where}: no folder "
                          f"can be made there ({exc.strerror or exc}); choose another "
                          "run.output_dir") from None


def create_run_dir(output_dir: Path, name: str) -> Path:
    """Make a new run directory ``output_dir/name``, or ``name-2``, ``name-3``... if taken.

    Raises:
        RecipeError: ``name`` is not one folder name (see :func:`check_run_name`), or
            ``output_dir`` cannot hold it (see :func:`check_output_dir`).
    """
    check_run_name(name)
    check_output_dir(output_dir)
    first_made = _first_missing(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    candidate, number = output_dir / name, 1
    while True:
        try:
            candidate.mkdir()
        except FileExistsError:
            number += 1
            candidate = output_dir / f"{name}-{number}"
            continue
        recorded = _MADE.get()
        if recorded is not None:
            recorded.append(MadeRunDir(candidate, first_made or candidate))
        return candidate


@dataclass(frozen=True)
class MadeRunDir:
    """A run directory :func:`create_run_dir` made, and the outermost folder it made for it
    (``run.output_dir`` when that did not exist, else the run directory itself)."""

    path: Path
    outermost: Path

    @classmethod
    def to_make(cls, path: Path) -> MadeRunDir | None:
        """The record of ``path`` about to be made (None: it exists already), for a run
        directory that is made without :func:`create_run_dir` (``--resume auto``)."""
        outermost = _first_missing(path)
        return None if outermost is None else cls(path, outermost)


#: The list :func:`recording_made_run_dirs` collects into, in this context only: the run
#: directory is made deep inside a fit, and only the caller around it knows the start failed.
_MADE: ContextVar[list[MadeRunDir] | None] = ContextVar("imtrans_made_run_dirs", default=None)


@contextmanager
def recording_made_run_dirs(into: list[MadeRunDir] | None = None
                            ) -> Iterator[list[MadeRunDir]]:
    """Collect the run directories :func:`create_run_dir` makes inside the ``with`` block (in
    this thread or task), into ``into`` (default: a new list): what a start made, and so what
    it may remove when it fails.

    Example:
        >>> with recording_made_run_dirs() as made:  # doctest: +SKIP
        ...     fit(recipe)
    """
    made: list[MadeRunDir] = [] if into is None else into
    token = _MADE.set(made)
    try:
        yield made
    finally:
        _MADE.reset(token)


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (None: it exists)."""
    missing = None
    while not os.path.lexists(folder) and folder.parent != folder:
        missing, folder = folder, folder.parent
    return missing


def latest_run_dir(output_dir: Path, name: str) -> Path | None:
    """The most recent run directory of ``name`` (the highest ``-N`` suffix), if any."""
    check_run_name(name)
    pattern = re.compile(rf"{re.escape(name)}(?:-(\d+))?")
    found = []
    for path in output_dir.glob(f"{name}*"):
        match = pattern.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1) or 1), path))
    return max(found)[1] if found else None


def write_run_record(run_dir: Path, resolved: dict[str, Any], loaded: Components,
                     device: torch.device, data: dict[str, str] | None = None
                     ) -> dict[str, Any]:
    """Write ``recipe.toml`` and ``environment.json``; return the environment record.

    ``data``: the data the run trains on, when it is not simply ``data.root`` (the bundled
    sample of a missing dataset): kept in the environment record under ``data``, and said in
    a comment atop ``recipe.toml`` (its ``note``).
    """
    import torch

    run = RunDir(run_dir)
    note = f"# {printable_path(data['note'])}\n" if data and data.get("note") else ""
    atomic_write(run.recipe, note + dumps(resolved))
    environment: dict[str, Any] = {
        "imtrans": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "plugins": {p.name: {"distribution": p.distribution, "version": p.version}
                    for p in loaded.plugins},
        # Read from .git as files: running git would run what the checkout configures.
        "git_commit": head_commit(),
    }
    if data:
        environment["data"] = data
    atomic_write(run.environment, json.dumps(environment, indent=2) + "\n")
    return environment
